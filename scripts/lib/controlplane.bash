# Sourceable helpers to run a test control plane on 127.0.0.1: etcd and
# kube-apiserver (RBAC+Node, client-cert admin, certificates made with
# openssl), as scripts/control-plane-smoke does. The caller owns cleanup:
# call cp_stop from its EXIT trap (it stops what was started, by PID, in
# reverse order).
#
#   CP_BIN=/path/to/bin CP_DIR=$(mktemp -d) ; cp_certs ; cp_start_etcd ;
#   cp_start_apiserver [extra kube-apiserver flags...]
#
# Sets CP_ETCD_URL, CP_API_URL; files in CP_DIR: ca.crt, admin.crt/.key
# (O=system:masters), kubeconfig (admin). CP_PIDS lists the processes.

CP_PIDS=()
cp_used=" "

cp_say() { echo "controlplane: $*" >&2; }

# A free loopback TCP port in CP_PORT: random from 20000 up to the start of
# the ephemeral range (an outgoing connection's local port there would make
# a later listen() fail), no socket on it now, none handed out before (not
# in a $(subshell), which would forget that).
cp_free_port() {
	local p lo _hi
	read -r lo _hi </proc/sys/net/ipv4/ip_local_port_range || lo=32768
	((lo > 21000)) || lo=60000
	for _ in $(seq 100); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % (lo - 20000)))
		[[ $cp_used == *" $p "* ]] && continue
		if [[ -z $(ss -Htan "sport = :$p") ]]; then
			cp_used+="$p "
			CP_PORT=$p
			return 0
		fi
	done
	cp_say "no free port"
	return 1
}

# Polls "$@" every 0.5 s until it succeeds, at most $1 seconds; gives up
# early if the process CP_WAIT_PID (if set) has exited.
cp_wait_for() {
	local secs=$1 what=$2
	shift 2
	local end=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < end)) || { cp_say "$what: not after $secs s"; return 1; }
		if [[ -n ${CP_WAIT_PID:-} ]] && ! kill -0 "$CP_WAIT_PID" 2>/dev/null; then
			cp_say "$what: the process exited"
			return 1
		fi
		sleep 0.5
	done
}

cp_certs() {
	(
		cd "$CP_DIR"
		ossl() { openssl "$@" 2>>openssl.log; }
		sign() { # name subject extensions
			ossl ecparam -name prime256v1 -genkey -noout -out "$1.key"
			ossl req -new -key "$1.key" -subj "$2" -out "$1.csr"
			printf '%s\n' "$3" >"$1.ext"
			ossl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
				-extfile "$1.ext" -out "$1.crt"
		}
		ossl ecparam -name prime256v1 -genkey -noout -out ca.key
		ossl req -x509 -new -key ca.key -subj /CN=kbridge-test-ca -days 2 -out ca.crt \
			-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
		sign apiserver /CN=kube-apiserver "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
		sign admin "/O=system:masters/CN=kbridge-admin" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
		ossl ecparam -name prime256v1 -genkey -noout -out sa.key
		ossl ec -in sa.key -pubout -out sa.pub
	)
}

cp_start_etcd() {
	local port peer
	cp_free_port
	port=$CP_PORT
	cp_free_port
	peer=$CP_PORT
	CP_ETCD_URL=http://127.0.0.1:$port
	cp_say "etcd on 127.0.0.1:$port (peer $peer)"
	"$CP_BIN/etcd" --name test --data-dir "$CP_DIR/etcd" --unsafe-no-fsync \
		--listen-client-urls "$CP_ETCD_URL" --advertise-client-urls "$CP_ETCD_URL" \
		--listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
		--initial-cluster "test=http://127.0.0.1:$peer" >"$CP_DIR/etcd.log" 2>&1 &
	CP_PIDS+=($!)
	CP_WAIT_PID=$! cp_wait_for 30 "etcd health" curl -fsS "$CP_ETCD_URL/health"
}

# Extra arguments go to kube-apiserver.
cp_start_apiserver() {
	local port start
	cp_free_port
	port=$CP_PORT
	CP_API_URL=https://127.0.0.1:$port
	cp_say "kube-apiserver on 127.0.0.1:$port"
	(
		cd "$CP_DIR"
		exec "$CP_BIN/kube-apiserver" --etcd-servers "$CP_ETCD_URL" \
			--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
			--endpoint-reconciler-type none \
			--service-cluster-ip-range 10.96.0.0/16 --authorization-mode Node,RBAC \
			--client-ca-file ca.crt --tls-cert-file apiserver.crt --tls-private-key-file apiserver.key \
			--service-account-issuer https://kubernetes.default.svc.cluster.local \
			--service-account-key-file sa.pub --service-account-signing-key-file sa.key \
			--cert-dir "$CP_DIR/apiserver-certs" --profiling=false "$@"
	) >"$CP_DIR/apiserver.log" 2>&1 &
	CP_PIDS+=($!)
	local pid=$!
	cat >"$CP_DIR/kubeconfig" <<EOK
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: $CP_API_URL
    certificate-authority: $CP_DIR/ca.crt
users:
- name: admin
  user:
    client-certificate: $CP_DIR/admin.crt
    client-key: $CP_DIR/admin.key
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
EOK
	start=$SECONDS
	CP_WAIT_PID=$pid cp_wait_for 120 "apiserver /readyz" curl -fsS --cacert "$CP_DIR/ca.crt" \
		--cert "$CP_DIR/admin.crt" --key "$CP_DIR/admin.key" "$CP_API_URL/readyz"
	cp_say "apiserver ready after $((SECONDS - start)) s"
}

# Stop everything started, newest first (TERM, then KILL after 10 s).
cp_stop() {
	local i p
	for ((i = ${#CP_PIDS[@]} - 1; i >= 0; i--)); do
		p=${CP_PIDS[i]}
		kill -TERM "$p" 2>/dev/null || continue
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	CP_PIDS=()
}
