# shellcheck shell=bash
# The playground's Kubernetes API server (scripts/playground up --k8s, or
# KB_PG_K8S=1). Sourced by scripts/playground; uses its ns/nx/spawn/die and
# its tables (POD_IP, POD_NS, SERVICES, ...).
#
#   ws  (alice, carol) --https 192.168.50.1:6443--\
#   bob                --https 192.168.51.1:6443---+--> node: kube-apiserver 0.0.0.0:6443
#   mate: nothing (node's input chain drops it)   |     (Node,RBAC; advertises 10.244.0.1)
#   pods --https 10.96.0.1:443 (DNAT in node)------/     etcd 127.0.0.1:2379 (node only)
#                                                        kwok (node and pod status)
#
# The API server holds the playground as real objects: Namespaces default,
# shop, kbridge; one Node (kwok's, podCIDR 10.244.0.0/16); a Pod per
# playground pod with the pod's address as status.podIP; Services with the
# playground's cluster IPs; their EndpointSlices; ServiceAccounts and the
# kube-root-ca.crt ConfigMaps. No kube-controller-manager or scheduler runs:
# this file creates what they would (default ServiceAccounts, root CA
# ConfigMaps, EndpointSlices, pods' nodeName). Pod IPs: a real node's CNI
# picks the address and the kubelet reports it; here the network namespace
# has its address already, the pod carries it in the annotation
# playground.kbridge.dev/pod-ip and kwok's pod-ready stage (replaced in
# $K8S/kwok-stages.yaml) reports that address, so status.podIP is right from
# the first Running update on (no window with a made-up address).
#
# Files, all under $STATE/kube ($K8S): ca.{crt,key} (one CA signs the serving
# certificate and the client certificates; --client-ca-file), tokens.csv
# (static tokens of bob and carol), sa.{key,pub}, etcd/, *.log, *.pid, and the
# kubeconfigs: admin (client certificate O=system:masters, certificates
# embedded), alice (client certificate CN=alice, files next to it, relative
# paths), bob (bearer token), carol (exec plugin carol-credential, which logs
# each run to carol-credential.log). The manager pod's in-cluster files
# (token bound to the pod, ca.crt, namespace) are in $STATE/mgr/serviceaccount.

K8S=$STATE/kube
K8S_PORT=6443
K8S_KUBELET_PORT=10250
# a port no playground pod listens on (kwok forwards it, for tests of a
# refused port-forward)
K8S_CLOSED_PORT=9
K8S_NODE=playground-node
K8S_NODE_IP=10.244.0.1
K8S_SVC_IP=10.96.0.1
K8S_POD_IP_KEY=playground.kbridge.dev/pod-ip
K8S_NETNS_KEY=playground.kbridge.dev/netns
K8S_STARTING_KEY=playground.kbridge.dev/starting
declare -A K8S_POD_NAME=([mgr]=kbridge-manager [web]=web [api]=api [echo]=echo
	[cart]=cart)
# Service and container port names
declare -A K8S_PORT_NAME=([80]=http [7]=echo [8443]=tunnel)
declare -A K8S_APP_IMAGE=([mgr]=kbridge/agent:dev [web]=nginx:1.27 [api]=nginx:1.27
	[echo]=alpine/socat:1.8 [cart]=nginx:1.27)

k8s_bin() {
	local b
	if [[ -z ${K8S_BIN:-} ]]; then
		K8S_BIN=${KB_CP_BIN:-$("$REPO/scripts/build-control-plane" | tail -n1)} ||
			die "--k8s: scripts/build-control-plane failed"
	fi
	for b in etcd kube-apiserver kubectl kwok ../kwok-stages.yaml; do
		[[ -e $K8S_BIN/$b ]] || die "--k8s: no $K8S_BIN/$b (run scripts/build-control-plane)"
	done
}

# spawn, but not a job of this shell: a failed up kills it with SIGKILL,
# which bash would report
k8s_spawn() { spawn "$@"; disown; }

k8s_enabled() { [[ -e $STATE/k8s ]]; }

# down: the API server's state is thrown away, so no graceful shutdown
# (kill_pids would wait 2 s for it)
k8s_stop() {
	local f pid
	for f in "$K8S"/{kwok,apiserver,etcd}.pid; do
		pid=$(pidof_file "$f" || true)
		alive "$pid" && kill -KILL "$pid" 2>/dev/null
	done
	return 0
}

# node's dnsmasq reads its kubernetes.default record from a file, written
# (and re-read on SIGHUP) when the API server is added; empty without --k8s
k8s_dns_args() {
	[[ -e $STATE/node/k8s.hosts ]] || : >"$STATE/node/k8s.hosts"
	echo "--addn-hosts=$STATE/node/k8s.hosts"
}

k8s_expected() {
	k8s_enabled || return 0
	echo "etcd(node) $K8S/etcd.pid"
	echo "apiserver(node) $K8S/apiserver.pid"
	echo "kwok(node) $K8S/kwok.pid"
}

# kubectl as the cluster admin, from node
k8s_kubectl() {
	[[ -n ${K8S_BIN:-} ]] || K8S_BIN=$(cat "$K8S/bin" 2>/dev/null) || die "not up with --k8s"
	nx node env KUBECACHEDIR="$K8S/cache" "$K8S_BIN/kubectl" --kubeconfig "$K8S/admin.kubeconfig" \
		--request-timeout=20s "$@"
}

k8s_certs() {
	local d=$K8S
	ossl() { openssl "$@" 2>>"$d/openssl.log"; }
	ossl ecparam -name prime256v1 -genkey -noout -out "$d/ca.key"
	ossl req -x509 -new -key "$d/ca.key" -subj "/CN=kbridge-playground-ca-$KB_PG" -days 30 \
		-out "$d/ca.crt" -addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign
	k8s_sign apiserver /CN=kube-apiserver serverAuth "subjectAltName=IP:192.168.50.1,IP:192.168.51.1,IP:$K8S_NODE_IP,IP:$K8S_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
	k8s_sign admin /O=system:masters/CN=kbridge-admin clientAuth
	k8s_sign alice /CN=alice clientAuth
	# kwok's kubelet API (pods/portforward), verified by the API server, and
	# the API server's client certificate for it
	k8s_sign kubelet "/O=system:nodes/CN=system:node:$K8S_NODE" serverAuth \
		"subjectAltName=IP:$K8S_NODE_IP,DNS:$K8S_NODE"
	k8s_sign apiserver-kubelet /O=system:masters/CN=kube-apiserver-kubelet-client clientAuth
	ossl ecparam -name prime256v1 -genkey -noout -out "$d/sa.key"
	ossl ec -in "$d/sa.key" -pubout -out "$d/sa.pub"
}

k8s_sign() { # name subject extendedKeyUsage [more extensions]
	local d=$K8S
	ossl ecparam -name prime256v1 -genkey -noout -out "$d/$1.key"
	ossl req -new -key "$d/$1.key" -subj "$2" -out "$d/$1.csr"
	printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n%s\n' \
		"$3" "${4:-}" >"$d/$1.ext"
	ossl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 30 \
		-extfile "$d/$1.ext" -out "$d/$1.crt"
	rm -f "$d/$1.csr" "$d/$1.ext"
}

k8s_kubeconfig() { # file server user-yaml (indented 4)
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: playground
  cluster:
    server: $2
    certificate-authority-data: $(base64 -w0 <"$K8S/ca.crt")
users:
- name: $4
  user:
$3
contexts:
- name: $4@playground
  context:
    cluster: playground
    user: $4
    namespace: default
current-context: $4@playground
EOF
}

k8s_write_credentials() {
	local bob carol
	bob=$(openssl rand -hex 24)
	carol=$(openssl rand -hex 24)
	# A static token file, so bob is the user "bob" (a ServiceAccount token
	# would make him system:serviceaccount:NS:NAME, not a developer).
	printf '%s,bob,bob-uid\n%s,carol,carol-uid\n' "$bob" "$carol" >"$K8S/tokens.csv"
	chmod 600 "$K8S/tokens.csv"
	printf '%s\n' "$carol" >"$K8S/carol.token"

	k8s_kubeconfig "$K8S/admin.kubeconfig" "https://192.168.50.1:$K8S_PORT" \
"    client-certificate-data: $(base64 -w0 <"$K8S/admin.crt")
    client-key-data: $(base64 -w0 <"$K8S/admin.key")" admin
	k8s_kubeconfig "$K8S/alice.kubeconfig" "https://192.168.50.1:$K8S_PORT" \
"    client-certificate: alice.crt
    client-key: alice.key" alice
	k8s_kubeconfig "$K8S/bob.kubeconfig" "https://192.168.51.1:$K8S_PORT" \
"    token: $bob" bob
	# carol's credential comes from an exec plugin (as with cloud logins);
	# each run appends a line to carol-credential.log, so a client's caching
	# can be counted.
	cat >"$K8S/carol-credential" <<EOF
#!/bin/sh
# kubectl exec credential plugin of the playground user carol
d=\$(dirname "\$0")
date -u +%FT%TZ >>"\$d/carol-credential.log" 2>/dev/null
exp=\$(date -u -d "+\${CAROL_TOKEN_SECONDS:-3600} seconds" +%FT%TZ)
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}\n' "\$(cat "\$d/carol.token")" "\$exp"
EOF
	chmod 755 "$K8S/carol-credential"
	: >"$K8S/carol-credential.log"
	k8s_kubeconfig "$K8S/carol.kubeconfig" "https://192.168.50.1:$K8S_PORT" \
"    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: $K8S/carol-credential
      interactiveMode: Never" carol
	# private, as $STATE/{alice,bob}.json (a test running a developer
	# without root hands them over)
	chmod 600 "$K8S"/*.kubeconfig "$K8S"/*.key "$K8S"/carol.token
}

# kwok's stages, with pod-ready reporting the annotated address as the pod IP
k8s_kwok_stages() {
	awk -v RS='\n---\n' -v ORS='\n---\n' '!/\n  name: pod-ready\n/' "$K8S_BIN/../kwok-stages.yaml"
	cat <<'EOF'
# kwok's pod-ready (kustomize/stage/pod/fast/pod-ready.yaml), but the pod IP
# is the annotation playground.kbridge.dev/pod-ip when the pod has it, and a
# pod with the annotation playground.kbridge.dev/starting (follow-deployments
# --run, until its containers listen on their ports) stays Pending
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.metadata.annotations["playground.kbridge.dev/starting"]'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Pending'
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values:
      - 'True'
  next:
    statusTemplate: |
      {{ $now := Now }}

      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
      {{ range .spec.readinessGates }}
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: {{ .conditionType | Quote }}
      {{ end }}

      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}

      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        {{ if eq .restartPolicy "Always" }}
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
        {{ else }}
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
        {{ end }}
      {{ end }}
      {{ $hostIPs := NodeIPsWith .spec.nodeName }}
      {{ with $hostIPs }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ $ip := "" }}
      {{ with .metadata.annotations }}
      {{ with index . "playground.kbridge.dev/pod-ip" }}
      {{ $ip = . }}
      {{ end }}
      {{ end }}
      {{ if $ip }}
      podIP: {{ $ip | Quote }}
      podIPs:
      - ip: {{ $ip | Quote }}
      {{ else }}
      {{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      {{ with $podIPs }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
EOF
}

# kwok's port-forwards (its kubelet API, which the API server's
# pods/portforward reaches): a kubelet forwards to any port in the pod's
# network namespace; kwok forwards a port listed here to a fixed address, so
# each pod lists its container ports (and the sidecar's, and
# K8S_CLOSED_PORT) to its address. Matched by namespace and name; the
# manager's namespace by namespace alone, as run-pod's pods (new names) take
# mgr's address.
k8s_kwok_forwards() {
	local pod ports p names
	for pod in $PODS; do
		if [[ $pod == mgr ]]; then
			ports="8443 8080"
			names=""
		else
			ports="${APP_PORT[$pod]} ${SIDECAR_PORT[$pod]:-}"
			[[ $pod == web ]] && ports+=" 5201"
			names="matchNames: [${K8S_POD_NAME[$pod]}]"
		fi
		cat <<EOF
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterPortForward
metadata: {name: playground-$pod}
spec:
  selector:
    matchNamespaces: [${POD_NS[$pod]}]
    $names
  forwards:
EOF
		for p in $ports $K8S_CLOSED_PORT; do
			echo "  - {ports: [$p], target: {address: ${POD_IP[$pod]}, port: $p}}"
		done
	done
}

# Start etcd and kube-apiserver in node (called once node's network and
# firewall exist; k8s_populate waits for them, so the rest of `up` runs
# meanwhile).
k8s_start() {
	k8s_bin
	mkdir -p "$K8S"
	chmod 755 "$K8S"
	echo "$K8S_BIN" >"$K8S/bin"
	: >"$STATE/k8s"
	k8s_certs
	k8s_write_credentials
	# workstations ws and bob reach the API server (as a developer does);
	# mate still reaches nothing but the preview port. Pods reach it at the
	# kubernetes Service, as kube-proxy makes it.
	nx node nft insert rule ip playground input iifname '{ "v-ws", "v-bob" }' \
		ip daddr '{ 192.168.50.1, 192.168.51.1 }' tcp dport "$K8S_PORT" accept
	nx node nft add rule ip playground svc ip daddr "$K8S_SVC_IP" tcp dport 443 \
		dnat to "$K8S_NODE_IP:$K8S_PORT"
	# kwok's kubelet port checks no client (a kubelet would): only the API
	# server, in node itself, reaches it
	nx node nft insert rule ip playground input iifname != lo tcp dport "$K8S_KUBELET_PORT" drop

	local pid
	printf '%s kubernetes.default.svc.cluster.local\n' "$K8S_SVC_IP" >"$STATE/node/k8s.hosts"
	pid=$(pidof_file "$STATE/node/dnsmasq.pid" || true)
	if alive "$pid"; then kill -HUP "$pid"; fi

	k8s_spawn node "$K8S/etcd.pid" "$K8S/etcd.log" \
		"$K8S_BIN/etcd" --name node --data-dir "$K8S/etcd" --unsafe-no-fsync \
		--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster node=http://127.0.0.1:2380 --listen-metrics-urls ''
	# The API server retries etcd until it answers.
	k8s_spawn node "$K8S/apiserver.pid" "$K8S/apiserver.log" \
		"$K8S_BIN/kube-apiserver" --etcd-servers http://127.0.0.1:2379 \
		--bind-address 0.0.0.0 --secure-port "$K8S_PORT" --advertise-address "$K8S_NODE_IP" \
		--service-cluster-ip-range 10.96.0.0/16 --authorization-mode Node,RBAC \
		--client-ca-file "$K8S/ca.crt" --token-auth-file "$K8S/tokens.csv" \
		--tls-cert-file "$K8S/apiserver.crt" --tls-private-key-file "$K8S/apiserver.key" \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$K8S/sa.pub" --service-account-signing-key-file "$K8S/sa.key" \
		--cert-dir "$K8S/apiserver-certs" --profiling=false \
		--kubelet-certificate-authority "$K8S/ca.crt" \
		--kubelet-client-certificate "$K8S/apiserver-kubelet.crt" \
		--kubelet-client-key "$K8S/apiserver-kubelet.key" \
		--kubelet-preferred-address-types InternalIP
}

k8s_wait() { # SECONDS WHAT CMD...
	local secs=$1 what=$2 i
	shift 2
	for ((i = 0; i < secs * 5; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		k8s_check_alive || return 1
		sleep 0.2
	done
	echo "playground: $what: not after $secs s" >&2
	k8s_logs
	return 1
}

k8s_check_alive() {
	local f
	for f in "$K8S"/{etcd,apiserver,kwok}.pid; do
		[[ -e $f ]] || continue
		alive "$(pidof_file "$f")" && continue
		echo "playground: $(basename "$f" .pid) died; ${f%.pid}.log:" >&2
		tail -n 15 "${f%.pid}.log" >&2
		return 1
	done
}

k8s_logs() {
	local f
	for f in "$K8S"/{etcd,apiserver,kwok}.log; do
		[[ -s $f ]] || continue
		echo "---- $f" >&2
		tail -n 15 "$f" >&2
	done
}

k8s_ready() { [[ $(k8s_kubectl get --raw /readyz 2>/dev/null) == ok ]]; }

k8s_node_ready() {
	[[ $(k8s_kubectl get node "$K8S_NODE" \
		-o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

k8s_pods_running() {
	local want=${#POD_IP[@]} got
	got=$(k8s_kubectl get pods -A -l playground.kbridge.dev/pod \
		-o 'jsonpath={range .items[*]}{.status.phase}{"\n"}{end}' | grep -c '^Running$')
	((got == want))
}

# The playground as objects (one kubectl apply): what a cluster with these
# workloads, a kube-controller-manager and a scheduler would hold.
k8s_objects() {
	local kns name ip port pod to p
	for kns in default shop kbridge; do
		cat <<EOF
---
apiVersion: v1
kind: Namespace
metadata: {name: $kns}
EOF
	done
	for kns in default shop kbridge kube-system kube-public kube-node-lease; do
		cat <<EOF
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: $kns}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: kube-root-ca.crt, namespace: $kns}
data:
  ca.crt: |
$(sed 's/^/    /' "$K8S/ca.crt")
EOF
	done
	cat <<EOF
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: kbridge-manager, namespace: kbridge}
---
apiVersion: v1
kind: Node
metadata:
  name: $K8S_NODE
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: $K8S_NODE
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
spec:
  podCIDR: 10.244.0.0/16
  podCIDRs: [10.244.0.0/16]
status:
  allocatable: {cpu: "4", memory: 8Gi, pods: "110"}
  capacity: {cpu: "4", memory: 8Gi, pods: "110"}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  clusterIP: $DNS_IP
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
EOF
	for pod in $PODS; do
		name=${K8S_POD_NAME[$pod]}
		kns=${POD_NS[$pod]}
		cat <<EOF
---
apiVersion: v1
kind: Pod
metadata:
  name: $name
  namespace: $kns
  labels: {app: $name, playground.kbridge.dev/pod: $pod}
  annotations:
    $K8S_POD_IP_KEY: ${POD_IP[$pod]}
    $K8S_NETNS_KEY: $(ns "$pod")
spec:
  nodeName: $K8S_NODE
EOF
		[[ $pod == mgr ]] && echo "  serviceAccountName: kbridge-manager"
		cat <<EOF
  containers:
  - name: $name
    image: ${K8S_APP_IMAGE[$pod]}
    ports:
EOF
		if [[ $pod == mgr ]]; then
			echo "    - {name: tunnel, containerPort: 8443}"
			echo "    - {name: preview, containerPort: 8080}"
		else
			echo "    - {name: ${K8S_PORT_NAME[${APP_PORT[$pod]}]}, containerPort: ${APP_PORT[$pod]}}"
		fi
		[[ $pod == web ]] && echo "    - {name: iperf3, containerPort: 5201}"
		if [[ ! -e $STATE/no-manager && -n ${SIDECAR_PORT[$pod]:-} ]]; then
			cat <<EOF
  - name: kbridge-sidecar
    image: kbridge/agent:dev
    ports:
    - {name: kbridge, containerPort: ${SIDECAR_PORT[$pod]}}
EOF
		fi
	done
	while read -r name kns ip port pod; do
		# the port the playground's DNAT sends to (a sidecar's port when
		# the workload has one, as a rewritten targetPort)
		to=${APP_PORT[$pod]:-$port}
		[[ ! -e $STATE/no-manager && -n ${SIDECAR_PORT[$pod]:-} ]] && to=${SIDECAR_PORT[$pod]}
		p=${K8S_POD_NAME[$pod]}
		cat <<EOF
---
apiVersion: v1
kind: Service
metadata: {name: $name, namespace: $kns, labels: {app: $p}}
spec:
  type: ClusterIP
  clusterIP: $ip
  selector: {app: $p}
  ports:
  - {name: ${K8S_PORT_NAME[$port]}, port: $port, targetPort: $to, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $name-playground
  namespace: $kns
  labels:
    kubernetes.io/service-name: $name
    endpointslice.kubernetes.io/managed-by: playground.kbridge.dev
addressType: IPv4
ports:
- {name: ${K8S_PORT_NAME[$port]}, port: $to, protocol: TCP}
endpoints:
- addresses: [${POD_IP[$pod]}]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: $K8S_NODE
  targetRef: {kind: Pod, namespace: $kns, name: $p}
EOF
	done <<<"$SERVICES"
}

# Wait for the API server, start kwok, create the objects, and wait for the
# node Ready and every pod Running.
k8s_populate() {
	local t0=$SECONDS
	k8s_wait 60 "kube-apiserver /readyz" k8s_ready
	k8s_kwok_stages >"$K8S/kwok-stages.yaml"
	k8s_kwok_forwards >"$K8S/kwok-forwards.yaml"
	k8s_spawn node "$K8S/kwok.pid" "$K8S/kwok.log" \
		"$K8S_BIN/kwok" --kubeconfig "$K8S/admin.kubeconfig" --config "$K8S/kwok-stages.yaml" \
		--config "$K8S/kwok-forwards.yaml" --node-port "$K8S_KUBELET_PORT" \
		--server-address "$K8S_NODE_IP:$K8S_KUBELET_PORT" \
		--tls-cert-file "$K8S/kubelet.crt" --tls-private-key-file "$K8S/kubelet.key" \
		--manage-all-nodes=false \
		--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
		--cidr=10.244.0.0/16 --node-ip="$K8S_NODE_IP" --node-lease-duration-seconds=40
	k8s_objects >"$K8S/objects.yaml"
	k8s_kubectl apply --server-side --field-manager=playground -f - <"$K8S/objects.yaml" \
		>"$K8S/apply.log" 2>&1 || { cat "$K8S/apply.log" >&2; return 1; }
	k8s_wait 60 "node $K8S_NODE Ready" k8s_node_ready
	k8s_wait 60 "pods Running" k8s_pods_running
	# the manager pod's in-cluster credentials (a kubelet projects these
	# into /var/run/secrets/kubernetes.io/serviceaccount)
	local sa=$STATE/mgr/serviceaccount
	mkdir -p "$sa"
	k8s_kubectl -n kbridge create token kbridge-manager --duration 24h \
		--bound-object-kind Pod --bound-object-name kbridge-manager >"$sa/token"
	chmod 600 "$sa/token"
	cp "$K8S/ca.crt" "$sa/ca.crt"
	printf kbridge >"$sa/namespace"
	echo "$((SECONDS - t0))" >"$K8S/populate-seconds"
}

# scripts/playground run-pod NAMESPACE DEPLOYMENT: what a Deployment's
# controllers and a kubelet would do, there being none here. Creates the
# ReplicaSet (owned by the Deployment) and one Pod from its template (owned
# by the ReplicaSet, on playground-node, with the pod-ip annotation kwok
# reports as status.podIP), then runs the pod's one container as its spec
# says: command and args (the image's kbridge-agent is $KB_BIN/kbridge-agent;
# $(VAR) expanded as the kubelet does), env (value and fieldRef; plus
# KUBERNETES_SERVICE_HOST/PORT and HOSTNAME, as a kubelet sets), the user and
# group of its securityContext (setpriv; no-new-privs when
# allowPrivilegeEscalation is false, no capabilities when it drops ALL; with
# readOnlyRootFilesystem every mount but /proc, /sys and /dev read-only, in a
# mount namespace of its own), in the mgr network namespace (the manager's
# address, 10.244.0.10). The
# service-account token, bound to the Pod, with ca.crt and namespace, is in
# $STATE/pods/NS/DEPLOYMENT/serviceaccount; a pod expects them in
# /var/run/secrets/kubernetes.io/serviceaccount, which cannot be mounted
# here, so the harness alone adds KB_SERVICEACCOUNT_DIR=that directory to the
# environment. Not emulated: volumes, probes, resources. Run again, it replaces the pod (a new name, the old one's
# process killed and object deleted), as after `kubectl delete pod`.
# Needs KB_PG_NO_MANAGER=1: the hand-run manager holds mgr's address.
k8s_run_pod() {
	local kns=${1:-} dep=${2:-} node=mgr dir pod uid old pid i spec
	[[ -n $kns && -n $dep && $# == 2 ]] || die "usage: run-pod NAMESPACE DEPLOYMENT"
	[[ -x $KB_BIN/kbridge-agent ]] || die "build first: make"
	pid=$(pidof_file "$STATE/manager.pid" || true)
	alive "$pid" && die "the hand-run manager holds $(ns $node)'s address: up with KB_PG_NO_MANAGER=1"
	dir=$STATE/pods/$kns/$dep
	mkdir -p "$dir"
	chmod 755 "$STATE" "$STATE/pods" "$STATE/pods/$kns" "$dir"
	# the previous pod, if any: its process, then its object
	pid=$(pidof_file "$dir/pod.pid" || true)
	alive "$pid" && kill_pids "$pid"
	rm -f "$dir/pod.pid"
	old=$(cat "$dir/pod-name" 2>/dev/null || true)
	[[ -n $old ]] && k8s_kubectl -n "$kns" delete pod "$old" --ignore-not-found --wait=false >/dev/null
	# the playground's placeholder Pod object for that address
	k8s_kubectl -n "${POD_NS[$node]}" delete pods -l "playground.kbridge.dev/pod=$node" \
		--ignore-not-found --wait=false >/dev/null
	k8s_kubectl -n "$kns" get deployment "$dep" -o json >"$dir/deployment.json" ||
		die "no deployment $kns/$dep"
	python3 - "$dir" "$K8S_NODE" "$K8S_POD_IP_KEY" "${POD_IP[$node]}" "$K8S_NETNS_KEY" \
		"$(ns $node)" rs <<'PY' >"$dir/replicaset.json" || die "run-pod: cannot read $kns/$dep"
import hashlib, json, random, string, sys
d, node, ipkey, ip, nskey, netns, what = sys.argv[1:]
dep = json.load(open(d + "/deployment.json"))
t = dep["spec"]["template"]
h = hashlib.sha256(json.dumps(t, sort_keys=True).encode()).hexdigest()[:10]
name = dep["metadata"]["name"] + "-" + h
own = lambda o: [{"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"],
	"uid": o["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
labels = dict(t["metadata"].get("labels", {}), **{"pod-template-hash": h})
tmpl = json.loads(json.dumps(t))
tmpl["metadata"]["labels"] = labels
rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
	"metadata": {"name": name, "namespace": dep["metadata"]["namespace"], "labels": labels,
		"ownerReferences": own(dep)},
	"spec": {"replicas": 1, "selector": {"matchLabels": dict(dep["spec"]["selector"]["matchLabels"],
		**{"pod-template-hash": h})}, "template": tmpl}}
print(json.dumps(rs))
PY
	k8s_kubectl apply --server-side --field-manager=playground-controller -o json \
		-f "$dir/replicaset.json" >"$dir/replicaset.json.applied" ||
		die "run-pod: cannot create the ReplicaSet"
	# the Deployment's other ReplicaSets scale to 0, as after a rollout
	local rs owner cur
	cur=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["metadata"]["name"])' "$dir/replicaset.json.applied")
	while read -r rs owner; do
		if [[ $owner == "$dep" && $rs != "$cur" ]]; then
			k8s_kubectl -n "$kns" scale rs "$rs" --replicas=0 >/dev/null
		fi
	done < <(k8s_kubectl -n "$kns" get rs -o 'jsonpath={range .items[*]}{.metadata.name} {.metadata.ownerReferences[0].name}{"\n"}{end}')
	python3 - "$dir" "$K8S_NODE" "$K8S_POD_IP_KEY" "${POD_IP[$node]}" "$K8S_NETNS_KEY" \
		"$(ns $node)" <<'PY' >"$dir/pod.json" || die "run-pod: cannot make the pod"
import json, random, string, sys
d, node, ipkey, ip, nskey, netns = sys.argv[1:]
rs = json.load(open(d + "/replicaset.json.applied"))
t = rs["spec"]["template"]
sfx = "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
meta = {"name": rs["metadata"]["name"] + "-" + sfx, "namespace": rs["metadata"]["namespace"],
	"labels": t["metadata"].get("labels", {}),
	"annotations": dict(t["metadata"].get("annotations", {}), **{ipkey: ip, nskey: netns}),
	"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
		"name": rs["metadata"]["name"], "uid": rs["metadata"]["uid"],
		"controller": True, "blockOwnerDeletion": True}]}
spec = dict(t["spec"], nodeName=node)
print(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}))
PY
	k8s_kubectl create -o json -f "$dir/pod.json" >"$dir/pod.json.created" ||
		die "run-pod: the API server refused the pod"
	pod=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["metadata"]["name"])' "$dir/pod.json.created")
	uid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["metadata"]["uid"])' "$dir/pod.json.created")
	echo "$pod" >"$dir/pod-name"
	# what a kubelet projects into the pod
	rm -rf "$dir/serviceaccount"
	mkdir -m 755 "$dir/serviceaccount"
	spec=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["spec"].get("serviceAccountName","default"))' "$dir/pod.json.created")
	k8s_kubectl -n "$kns" create token "$spec" --duration 24h --bound-object-kind Pod \
		--bound-object-name "$pod" --bound-object-uid "$uid" >"$dir/serviceaccount/token" ||
		die "run-pod: no token for serviceaccount $kns/$spec"
	cp "$K8S/ca.crt" "$dir/serviceaccount/ca.crt"
	printf '%s' "$kns" >"$dir/serviceaccount/namespace"
	chmod 644 "$dir/serviceaccount/"*
	# the container's user, environment and command line
	# (scripts/lib/playground-pod.py, which follow-deployments --run shares)
	python3 "$REPO/scripts/lib/playground-pod.py" run-pod "$dir" "$KB_BIN" "$K8S_SVC_IP" \
		"${POD_IP[$node]}" "$K8S_NODE_IP" ||
		die "run-pod: cannot run $kns/$pod"
	local run=()
	mapfile -d '' run <"$dir/run"
	: >>"$dir/pod.log"
	chmod 644 "$dir/pod.log"
	spawn "$node" "$dir/pod.pid" "$dir/pod.log" "${run[@]}"
	pid=$(pidof_file "$dir/pod.pid")
	for ((i = 0; i < 20; i++)); do
		running "$pid" || {
			# no kubelet to report it failed: the pod goes
			k8s_kubectl -n "$kns" delete pod "$pod" --wait=false >/dev/null
			echo "playground: pod $kns/$pod: its container exited (pod deleted); $dir/pod.log:" >&2
			tail -n 5 "$dir/pod.log" >&2
			return 1
		}
		sleep 0.05
	done
	k8s_wait 30 "pod $kns/$pod Running" k8s_pod_running "$kns" "$pod"
	echo "pod $kns/$pod runs in $(ns $node) (${POD_IP[$node]}), pid $pid, log $dir/pod.log"
}

k8s_pod_running() {
	[[ $(k8s_kubectl -n "$1" get pod "$2" -o 'jsonpath={.status.phase} {.status.podIP}') == "Running ${POD_IP[mgr]}" ]]
}
