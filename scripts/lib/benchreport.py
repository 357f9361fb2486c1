#!/usr/bin/env python3
"""The reports of scripts/bench: parsers of the tools' outputs (wrk, iperf3,
openssl speed, the results file), medians and ratios, the tables and JSON.

  benchreport.py connect RESULTS OUT_JSON SECONDS QUICK HOLD_CONNS
  benchreport.py intercept RESULTS OUT_JSON SECONDS ROUNDS QUICK CLK_TCK
  benchreport.py preview RESULTS OUT_JSON SECONDS ROUNDS QUICK CLK_TCK
  benchreport.py portforward RESULTS OUT_JSON DOWN_MIB ECHO_MIB ROUNDS QUICK
  benchreport.py k8sconnect RESULTS OUT_JSON ROUNDS QUICK DOWN_MIB ECHO_MIB PF_ROUNDS
  benchreport.py kintercept RESULTS OUT_JSON SECONDS ROUNDS QUICK CLK_TCK
  benchreport.py team RESULTS OUT_JSON
  benchreport.py h2 RESULTS OUT_JSON SECONDS ROUNDS QUICK CLK_TCK
  benchreport.py h2load FILE FIELD...    fields of one h2load output: rps, ...
  benchreport.py wrk FILE FIELD...       fields of one wrk output, one a line
                                         ("null" when absent): rps, p99, problems
  benchreport.py iperf3 FILE             Gbit/s received, or "null"
  benchreport.py iperf3-bytes FILE       bytes received, or "null"
  benchreport.py openssl-speed           AES-128-GCM GB/s from `openssl speed` on stdin

RESULTS has one line per figure, written by scripts/lib/bench.bash's rec:
"MODE KEY VALUE...". Tests: tests/bench/test_benchreport.py.
"""
import json
import os
import platform
import re
import statistics
import sys

# ------------------------------------------------------------------ parsers
_TIME_US = {'us': 1, 'ms': 1e3, 's': 1e6, 'm': 60e6, 'h': 3600e6}


def to_us(s):
    """A wrk duration ("780.00us", "1.01ms", "2.00s", "1.50m") in microseconds."""
    m = re.match(r'^([\d.]+)(us|ms|s|m|h)$', s)
    return float(m.group(1)) * _TIME_US[m.group(2)] if m else None


def parse_wrk(text):
    """wrk's summary (with or without --latency). Latencies are None when wrk
    counted no response: it prints 0.00us then, which is no latency."""
    d = {'rps': None, 'requests': None, 'lat_avg_us': None, 'lat_max_us': None,
         'p50_us': None, 'p75_us': None, 'p90_us': None, 'p99_us': None,
         'errors': None, 'socket_errors': None, 'non2xx': 0, 'wrk_cpu_ticks': None}
    for line in text.splitlines():
        f = line.split()
        if line.startswith('Requests/sec:') and len(f) >= 2:
            d['rps'] = float(f[1])
        elif len(f) >= 4 and f[0] == 'Latency' and d['lat_avg_us'] is None:
            d['lat_avg_us'], d['lat_max_us'] = to_us(f[1]), to_us(f[3])
        elif len(f) >= 3 and f[1] == 'requests' and f[2] == 'in':
            d['requests'] = int(f[0])
        elif len(f) == 2 and f[0] in ('50%', '75%', '90%', '99%'):
            d['p%s_us' % f[0][:-1]] = to_us(f[1])
        elif line.strip().startswith('Socket errors:'):
            d['errors'] = line.strip()
            d['socket_errors'] = {k: int(v) for k, v in re.findall(r'(\w+) (\d+)', line)}
        elif line.strip().startswith('Non-2xx or 3xx responses:'):
            d['non2xx'] = int(f[-1])
        elif line.startswith('kbbench-wrkstat '):
            # /proc/PID/stat of the sh that ran wrk: cutime + cstime = wrk's CPU
            m = re.match(r'^kbbench-wrkstat \d+ \(.*\) (.*)$', line)
            if m:
                st = m.group(1).split()
                d['wrk_cpu_ticks'] = int(st[13]) + int(st[14])
    if not d['requests']:
        for k in ('lat_avg_us', 'lat_max_us', 'p50_us', 'p75_us', 'p90_us', 'p99_us'):
            d[k] = None
    return d


def parse_h2load(text):
    """h2load's summary: req/s, requests done and succeeded, failures, status
    classes, and its own CPU from the kbbench-stat line (as wrk's)."""
    d = {'rps': None, 'requests': None, 'succeeded': None, 'failed': None, 'errored': None,
         'timeout': None, 'non2xx': None, 'h2load_cpu_ticks': None}
    for line in text.splitlines():
        m = re.match(r'^finished in [\d.]+\w*, ([\d.]+) req/s', line)
        if m:
            d['rps'] = float(m.group(1))
        m = re.match(r'^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, '
                     r'(\d+) failed, (\d+) errored, (\d+) timeout', line)
        if m:
            d['requests'] = int(m.group(3))
            d['succeeded'], d['failed'], d['errored'], d['timeout'] = map(int, m.group(4, 5, 6, 7))
        m = re.match(r'^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx', line)
        if m:
            d['non2xx'] = sum(map(int, m.group(2, 3, 4)))
        m = re.match(r'^kbbench-stat \d+ \(.*\) (.*)$', line)
        if m:
            st = m.group(1).split()
            d['h2load_cpu_ticks'] = int(st[13]) + int(st[14])
    return d


def wrk_problems(d):
    """The error lines of a parsed wrk run as one note, or ''."""
    p = [d['errors']] if d['errors'] else []
    if d['non2xx']:
        p.append('Non-2xx or 3xx responses: %d' % d['non2xx'])
    return '; '.join(p)


def parse_iperf3(text):
    """iperf3 -J: Gbit/s the receiver got, or None (an error, no JSON)."""
    try:
        j = json.loads(text)
        return j['end']['sum_received']['bits_per_second'] / 1e9
    except (ValueError, KeyError, TypeError):
        return None


def parse_iperf3_bytes(text):
    """iperf3 -J: bytes the receiver got, or None."""
    try:
        return int(json.loads(text)['end']['sum_received']['bytes'])
    except (ValueError, KeyError, TypeError):
        return None


def parse_roles(val):
    """A connect "roles_KEY" value: "BYTES CLK_TCK NAME=TICKS,CALLS ..." with
    each NAME once before and once after the run -> {NAME: {'cpu_s_per_gib',
    'syscalls_per_mib'}}, or None without bytes; CALLS "-" (not counted):
    syscalls_per_mib None."""
    f = val.split()
    if len(f) < 2 or num(f[0]) is None or not num(f[0]) or not num(f[1]):
        return None
    nbytes, hz = num(f[0]), num(f[1])
    seen, out = {}, {}
    for w in f[2:]:
        name, _, v = w.partition('=')
        t, _, c = v.partition(',')
        if num(t) is None or (num(c) is None and c != '-'):
            continue
        if name not in seen:
            seen[name] = (num(t), num(c))
            continue
        t0, c0 = seen[name]
        out[name] = {'cpu_s_per_gib': round((num(t) - t0) / hz / (nbytes / 2**30), 3),
                     'syscalls_per_mib': None if num(c) is None or c0 is None else
                     round((num(c) - c0) / (nbytes / 2**20), 1)}
    return out


def parse_openssl_speed(text):
    """`openssl speed -evp aes-128-gcm`: GB/s at the largest block size."""
    for line in text.splitlines():
        f = line.split()
        if f and f[0].upper() == 'AES-128-GCM' and len(f) >= 2:
            m = re.match(r'^([\d.]+)k$', f[-1])
            if m:
                return float(m.group(1)) * 1e3 / 1e9
    return None


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ''


def read_results(path):
    """(mode, key, value) per line of the results file."""
    out = []
    for line in read_text(path).splitlines():
        p = line.split(' ', 2)
        p += [''] * (3 - len(p))
        out.append(tuple(p))
    return out


def num(v):
    try:
        return float(v)
    except ValueError:
        return None


# ------------------------------------------------------------------ figures
def summarize(xs):
    """Median and spread (half the min..max range in % of the median)."""
    m = statistics.median(xs)
    return round(m, 2), {'min': min(xs), 'max': max(xs), 'n': len(xs),
                         'half_range_pct': round(50 * (max(xs) - min(xs)) / m, 1) if m else None}


def medians(runs, keys):
    med = {v: {} for v in runs}
    spread = {v: {} for v in runs}
    for v in runs:
        for k in keys:
            xs = [d[k] for d in runs[v] if d.get(k) is not None]
            if xs:
                med[v][k], spread[v][k] = summarize(xs)
    return med, spread


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def per_round(runs, va, vb, k, kb=None):
    """min..max over the rounds of va's figure k / vb's figure kb (k when
    None) in the same round."""
    a = {d['round']: d.get(k) for d in runs[va]}
    b = {d['round']: d.get(kb or k) for d in runs[vb]}
    xs = [a[r] / b[r] for r in a if r in b and a[r] is not None and b[r]]
    return (min(xs), max(xs)) if xs else None


def busy_machine(env):
    """The load average before or after is above half the CPUs."""
    try:
        return max(float(env.get(k, '0').split()[0]) for k in ('load_before', 'load_after')) > \
            0.5 * (os.cpu_count() or 1)
    except (ValueError, IndexError):
        return False


# ------------------------------------------------------------------ tables
def fmt_ratio(x):
    return '-' if x is None else '%.2fx' % x


def machine_line(env):
    """machine: CPU model, the AES-GCM figure of one core (openssl speed)."""
    model, _, aes = env.get('machine', '?|').partition('|')
    return 'machine: %s; AES-128-GCM on one core (openssl speed, 16 KiB blocks): %s' % (
        model or '?', '%s GB/s' % aes if aes and aes != 'null' else 'n/a')


def target_lines(targets, w_name, w_shown):
    out = [('%%-%ds %%-%ds %%s' % (w_name, w_shown)) % ('target (informative)', 'measured', 'result')]
    for t in targets:
        out.append(('%%-%ds %%-%ds %%s' % (w_name, w_shown)) % (
            t['target'], t['measured'], {True: 'PASS', False: 'MISS', None: 'n/a'}[t['pass']]))
    return out


def target(targets, name, val, ok, shown):
    targets.append({'target': name, 'measured': shown, 'value': val, 'pass': ok})


def ratio_lines(runs, med, rows, width):
    """rows: (label, a, b, key[, b's key when not the same]); returns the lines
    and the ratios for the JSON."""
    ratios = {}
    out = [('%%-%ds %%8s   %%s' % width) % ('ratio (of medians)', 'value', 'per-round min..max')]
    for label, a, b, k, *kb in rows:
        kb = kb[0] if kb else k
        x = ratio(med[a].get(k), med[b].get(kb))
        pr = per_round(runs, a, b, k, kb)
        name = '%s/%s %s' % (a, b, k) if kb == k else '%s/%s %s/%s' % (a, b, k, kb)
        ratios[name] = {'value': None if x is None else round(x, 4),
                        'per_round': None if pr is None else [round(pr[0], 4), round(pr[1], 4)]}
        out.append(('%%-%ds %%8s   %%s' % width) % (label, fmt_ratio(x), '-' if pr is None else '%.2f..%.2f' % pr))
    return out, ratios


def note_lines(notes):
    return ['', 'notes:'] + ['  ' + n for n in notes] if notes else []


def write_json(out, doc):
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + '.tmp', 'w') as f:
        json.dump(doc, f, indent=1)
    os.rename(out + '.tmp', out)


# ------------------------------------------------------------------ connect
CONNECT_MODES = ['direct', 'stunnel', 'sshuttle', 'kbridge', 'relay']
CONNECT_FIG = [  # key, label, unit, higher is better, format
    ('tput1', 'throughput, 1 stream', 'Gbit/s', True, '%.3f'),
    ('tput8', 'throughput, 8 streams', 'Gbit/s', True, '%.3f'),
    ('http_ka', 'HTTP keep-alive (wrk -c50)', 'req/s', True, '%.0f'),
    ('http_new', 'HTTP new connection each', 'req/s', True, '%.0f'),
    ('dns_p50_ms', 'cluster DNS lookup p50', 'ms', False, '%.3f'),
    ('connect_ms', 'start -> first request', 'ms', False, '%.0f'),
]


def connect_figures(results):
    """The results file of a connect run -> figures per mode, runs, env, notes."""
    r = {m: {} for m in CONNECT_MODES}
    raw = {m: {} for m in CONNECT_MODES}
    notes, env = [], {}
    for mode, key, val in results:
        if mode == 'env':
            env[key] = val
        elif key == 'note':
            notes.append('%s: %s' % (mode, val))
        elif mode not in r:
            notes.append('%s: unknown mode in the results: %s %s' % (mode, key, val))
        elif key == 'dns':
            try:
                j = json.loads(val)
            except ValueError:
                j = {}
            r[mode]['dns_p50_ms'] = j.get('p50_ms')
            raw[mode]['dns'] = j
            if j.get('fail'):
                notes.append('%s: %d of %d DNS lookups failed' % (mode, j['fail'], j['fail'] + j.get('ok', 0)))
        elif key in ('connect_ms', 'connect_cmd_ms'):
            raw[mode].setdefault(key, []).append(num(val))
        elif key == 'state_after':
            raw[mode][key] = val
        elif key.startswith('roles_'):
            roles = parse_roles(val)
            if roles:
                r[mode][key] = roles
        else:
            r[mode][key] = num(val)
    for m in CONNECT_MODES:
        for key in ('connect_ms', 'connect_cmd_ms'):
            xs = [x for x in raw[m].get(key, []) if x is not None]
            if raw[m].get(key):
                r[m][key] = statistics.median(xs) if xs else None
    kb = r['kbridge']
    for pre in ('kbd', 'mgr'):
        b, h = kb.get(pre + '_rss_base'), kb.get(pre + '_rss_held')
        ok = kb.get('hold_ok') or 0
        kb[pre + '_kib_per_conn'] = round((h - b) / ok, 2) if b is not None and h is not None and ok else None
    return r, raw, env, notes


CPU_ROLES = [('kbridge', 'kbridged'), ('kbridge', 'manager'),
             ('stunnel', 'stunnel-client'), ('stunnel', 'stunnel-server'),
             ('relay', 'relay-client'), ('relay', 'relay-server')]


def cpu_per_gib(r, mode, key):
    """Sum of a mode's processes' CPU-seconds per GiB in a throughput figure."""
    roles = r[mode].get('roles_' + key)
    if not roles:
        return None
    return round(sum(x['cpu_s_per_gib'] for x in roles.values()), 3)


def cpu_per_gib_lines(r, env):
    """The CPU-seconds and system calls per GiB of the tunnel's processes in
    the throughput figures, beside what one AES-GCM pass costs here."""
    out = ['CPU-seconds per GiB carried (user + system) and read/write system calls per MiB, each',
           'process of the tunnel during the throughput figures:',
           '  %-16s %12s %12s %12s %12s' % ('', '1 stream', '8 streams', 'calls/MiB 1', 'calls/MiB 8')]
    for mode, name in CPU_ROLES:
        cells = []
        for f in ('cpu_s_per_gib', 'syscalls_per_mib'):
            for key in ('tput1', 'tput8'):
                x = (r[mode].get('roles_' + key) or {}).get(name, {}).get(f)
                cells.append('n/a' if x is None else ('%.2f' if f == 'cpu_s_per_gib' else '%.1f') % x)
        out.append('  %-16s %12s %12s %12s %12s' % ((name,) + tuple(cells)))
    for mode in ('kbridge', 'stunnel', 'relay'):
        out.append('  %-16s %12s %12s' % ((mode + ' (both)',) + tuple(
            'n/a' if cpu_per_gib(r, mode, k) is None else '%.2f' % cpu_per_gib(r, mode, k)
            for k in ('tput1', 'tput8'))))
    for other in ('stunnel', 'relay'):
        rs = [ratio(cpu_per_gib(r, 'kbridge', k), cpu_per_gib(r, other, k)) for k in ('tput1', 'tput8')]
        out.append('  %-16s %12s %12s' % (('kbridge/' + other,) + tuple(
            '-' if x is None else '%.2fx' % x for x in rs)))
    aes = num(env.get('machine', '?|').partition('|')[2] or 'null')
    if aes:
        out.append('  (one AES-128-GCM pass over 1 GiB at this machine\'s %.2f GB/s: %.2f CPU-s; each end of a' % (
            aes, 2**30 / (aes * 1e9)))
        out.append('  TLS tunnel makes one per byte, encrypting or decrypting)')
    return out


def report_connect(res, out, dur, quick, nconn):
    r, raw, env, notes = connect_figures(read_results(res))
    kb = r['kbridge']

    def g(m, k):
        v = r[m].get(k)
        return v if isinstance(v, (int, float)) else None

    def fr(x):
        if x is None:
            return '-'
        return ('%.3fx' if x < 0.1 else '%.2fx') % x
    lines = []
    P = lines.append
    P('kbridge connect benchmark (%s s per measurement%s, %d CPUs, kernel %s)' % (
        dur, ', --quick' if quick else '', os.cpu_count(), platform.release()))
    P('direct  = clients in the mgr pod (a cluster pod: the last leg of every tunnel), no tunnel;')
    P('          web service 10.96.1.1 via the node\'s DNAT, DNS straight to the cluster dnsmasq 10.96.0.10')
    P('stunnel = TLS 1.3 stunnel client in ws (127.0.0.1) -> stunnel server in the mgr pod -> web')
    P('sshuttle= sshuttle --method nat --dns in ws over ssh to sshd in the mgr pod')
    P('kbridge = kbridge connect in ws (kbridged -> manager in the mgr pod)')
    P('relay   = the floor: two plain TCP relays, no TLS (HAProxy mode tcp, one thread, no log) where')
    P('          stunnel\'s ends run (ws 127.0.0.1 -> mgr pod -> web): what any relay terminating TCP at')
    P('          both ends, as kbridge and stunnel do, reaches on this machine')
    P('the same path for all tunnels: ws -> node -> mgr pod -> node -> web pod;')
    P('net.ipv4.tcp_tw_reuse=1 in ws and mgr (so TIME_WAITs of one test do not slow the next)')
    P('binaries: %s; load average before %s, after %s%s' % (
        env.get('binaries', '?'), env.get('load_before', '?'), env.get('load_after', '?'),
        '  (busy machine: figures are noisy)' if busy_machine(env) else ''))
    P(machine_line(env))
    P('')
    row = '%-28s %-7s %10s %10s %10s %10s %10s | %9s %9s %9s %9s %9s %9s %9s'
    hdr = row % (
        'figure', 'unit', 'direct', 'stunnel', 'sshuttle', 'kbridge', 'relay',
        'stun/dir', 'ssh/dir', 'kb/dir', 'kb/stun', 'kb/ssh', 'rel/dir', 'kb/relay')
    P(hdr)
    P('-' * len(hdr))
    ratios = {}
    for key, label, unit, hib, fmt in CONNECT_FIG:
        vals = [g(m, key) for m in CONNECT_MODES]
        cells = [(fmt % v) if v is not None else 'n/a' for v in vals]
        d, s, sh, k, rl = vals
        rs = {'stunnel/direct': ratio(s, d), 'sshuttle/direct': ratio(sh, d), 'kbridge/direct': ratio(k, d),
              'kbridge/stunnel': ratio(k, s), 'kbridge/sshuttle': ratio(k, sh),
              'relay/direct': ratio(rl, d), 'kbridge/relay': ratio(k, rl)}
        ratios[key] = {a: (round(b, 4) if b is not None else None) for a, b in rs.items()}
        P(row % ((label, unit) + tuple(cells) + tuple(fr(x) for x in rs.values())))
    ratios['tput1']['relay/stunnel'], ratios['tput8']['relay/stunnel'] = (
        None if ratio(g('relay', k), g('stunnel', k)) is None else round(ratio(g('relay', k), g('stunnel', k)), 4)
        for k in ('tput1', 'tput8'))
    P('(ratios are value/value: for Gbit/s and req/s higher is better, for ms lower is better)')
    P('')
    P('CPU of the tunnel processes during each figure, % of one core: kbridged + manager,')
    P('stunnel client + server, sshuttle + ssh + sshd + server python, the two relays')
    P('(load generators not counted)')
    P('  %-26s %10s %10s %10s %10s' % ('', 'stunnel', 'sshuttle', 'kbridge', 'relay'))
    for key, label, unit, hib, fmt in CONNECT_FIG[:4]:
        P('  %-26s %10s %10s %10s %10s' % ((label,) + tuple(
            ('%.0f%%' % r[m]['cpu_' + key]) if r[m].get('cpu_' + key) is not None else 'n/a'
            for m in ('stunnel', 'sshuttle', 'kbridge', 'relay'))))
    P('')
    lines += cpu_per_gib_lines(r, env)
    P('')

    def kbv(k, fmt='%.0f'):
        v = kb.get(k)
        return (fmt % v) if v is not None else 'n/a'
    P('memory (VmRSS, kB)                      kbridged    manager')
    P('  idle, just after connect            %10s %10s' % (kbv('kbd_rss_idle'), kbv('mgr_rss_idle')))
    P('    of which anonymous (RssAnon)      %10s %10s' % (kbv('kbd_anon_idle'), kbv('mgr_anon_idle')))
    P('  idle, holder server started         %10s %10s' % (kbv('kbd_rss_base'), kbv('mgr_rss_base')))
    P('  with %d idle tunneled connections %10s %10s   (%s open, %s failed, %s s to open; streams %s)' % (
        nconn, kbv('kbd_rss_held'), kbv('mgr_rss_held'), kbv('hold_ok'), kbv('hold_fail'),
        kbv('hold_open_s', '%.1f'), kbv('streams_held')))
    P('  KiB per idle connection             %10s %10s' % (kbv('kbd_kib_per_conn', '%.1f'), kbv('mgr_kib_per_conn', '%.1f')))
    P('  after closing them                  %10s %10s   (streams left %s)' % (
        kbv('kbd_rss_after'), kbv('mgr_rss_after'), kbv('streams_after')))
    P('  idle, after all the loads above     %10s %10s' % (kbv('kbd_rss_loaded'), kbv('mgr_rss_loaded')))
    P('  manager before kbridge connected    %10s %10s' % ('', kbv('mgr_rss_start')))
    P('')

    def each(xs):
        return ', '.join('%.0f' % x if x is not None else 'fail' for x in xs)
    if raw['kbridge'].get('connect_ms'):
        P('kbridge connect -> first request, each run (ms): %s; the connect command alone: %s' % (
            each(raw['kbridge']['connect_ms']), each(raw['kbridge'].get('connect_cmd_ms', []))))
    if raw['sshuttle'].get('connect_ms'):
        P('sshuttle start -> first request, each run (ms): %s' % each(raw['sshuttle']['connect_ms']))
    for m in ('direct', 'sshuttle', 'kbridge'):
        j = raw[m].get('dns')
        if j:
            P('DNS %-8s p50 %s ms, p90 %s ms, p99 %s ms, %s ok, %s failed' % (
                m, j.get('p50_ms'), j.get('p90_ms'), j.get('p99_ms'), j.get('ok'), j.get('fail')))
    P('')
    def rate_targets(T, who, labels):
        # the four rate targets of issue 17 for column who, labelled by the
        # four formats in labels (throughput's take the stream count)
        for (key, lab), fmt in zip((('tput1', '1 stream'), ('tput8', '8 streams')), labels):
            x = ratios[key][who + '/stunnel']
            target(T, fmt % lab, x, None if x is None else x >= 1.3, fr(x))
        for (key, limit), lab in zip((('http_ka', 0.7), ('http_new', 0.75)), labels[2:]):
            x = ratios[key][who + '/direct']
            target(T, lab, x, None if x is None else x >= limit, fr(x))

    T = []
    rate_targets(T, 'kbridge', ('kbridge throughput %s >= 1.3x stunnel',) * 2 + (
        'keep-alive req/s >= 0.7x direct', 'new connections/s >= 0.75x direct'))
    x = g('kbridge', 'dns_p50_ms')
    target(T, 'DNS p50 < 0.3 ms', x, None if x is None else x < 0.3, '-' if x is None else '%.3f ms' % x)
    x = g('kbridge', 'connect_ms')
    target(T, 'connect -> first request < 300 ms', x, None if x is None else x < 300,
           '-' if x is None else '%.0f ms (median)' % x)
    for pre, who in (('kbd', 'kbridged'), ('mgr', 'manager')):
        x = kb.get(pre + '_rss_idle')
        target(T, '%s idle VmRSS < 10 MiB' % who, x, None if x is None else x < 10 * 1024,
               '-' if x is None else '%.0f kB' % x)
    for pre, who in (('kbd', 'kbridged'), ('mgr', 'manager')):
        x = kb.get(pre + '_kib_per_conn')
        target(T, '%s < 64 KiB per idle connection' % who, x, None if x is None else x < 64,
               '-' if x is None else '%.1f KiB' % x)
    lines += target_lines(T, 44, 20)
    P('')
    # The same targets applied to the floor: whether a relay with no TLS and
    # no protocol of its own meets them here says how much of a miss is the
    # machine's (CPU share of 2 cores) rather than kbridge's.
    F = []
    rate_targets(F, 'relay', ('relay chain throughput %s vs stunnel (1.3x)',) * 2 + (
        'relay chain keep-alive req/s vs direct (0.7x)', 'relay chain new connections/s vs direct (0.75x)'))
    P('the floor against the same targets (relay = two plain TCP relays, no TLS):')
    lines += target_lines(F, 50, 14)
    P('kbridge / relay: %s' % '; '.join('%s %s' % (lab, fr(ratios[key]['kbridge/relay'])) for key, lab in (
        ('tput1', '1 stream'), ('tput8', '8 streams'), ('http_ka', 'keep-alive'), ('http_new', 'new connections'))))
    P('')
    P('reference (measured elsewhere): stunnel ~0.17x direct 1-stream throughput, sshuttle ~0.007x;')
    P('  sshuttle 0.04x direct keep-alive req/s, 0.08x new-connection rate, DNS 0.66 ms (direct 0.05 ms), 1.2 s connect')
    lines += note_lines(notes)
    print('\n'.join(lines))
    write_json(out, {
        'benchmark': 'connect', 'duration_s': dur, 'quick': quick, 'cpus': os.cpu_count(),
        'kernel': platform.release(),
        'modes': {'direct': 'clients in the mgr pod (the last leg of every tunnel), no tunnel; DNS to 10.96.0.10',
                  'stunnel': 'stunnel TLS 1.3, client in ws, server in the mgr pod',
                  'sshuttle': 'sshuttle --method nat --dns in ws, sshd in the mgr pod',
                  'kbridge': 'kbridge connect in ws',
                  'relay': 'the floor: two plain TCP relays, no TLS (HAProxy mode tcp, one thread), '
                           'client in ws, server in the mgr pod'},
        'env': env, 'results': r, 'ratios': ratios, 'targets': T, 'floor_targets': F, 'runs': raw,
        'notes': notes,
        'table': lines})


# ------------------------------------------------------------------ rounds
def split_results(results, variants, run):
    """The lines of a wrk benchmark's results file: env, notes, idle memory per
    variant and other modes' extras as they are; each run line's fields to
    run(fields, notes) -> (variant, figures). -> runs, env, notes, mem_idle, extra"""
    env, notes, mem_idle, extra = {}, [], {}, {}
    runs = {v: [] for v in variants}
    for mode, key, val in results:
        if mode == 'env':
            env[key] = val
        elif key == 'note':
            notes.append('%s: %s' % (mode, val))
        elif key == 'mem_idle':
            mem_idle[mode] = val
        elif mode == 'run':
            v, d = run((key + ' ' + val).split(), notes)
            runs[v].append(d)
        else:
            extra.setdefault(mode, {})[key] = val
    return runs, env, notes, mem_idle, extra


def wrk_round(v, r, rc, text, hz, wall_ns, h0, h1):
    """One recorded wrk round: the parsed output plus what every round has
    (wall time, host CPU, wrk's CPU per request), and the notes on wrk's
    problems."""
    d = parse_wrk(text)
    notes = []
    d['round'] = int(r)
    d['wall_s'] = round(int(wall_ns) / 1e9, 3)
    b0, t0 = map(int, h0.split(','))
    b1, t1 = map(int, h1.split(','))
    d['host_busy_pct'] = round(100.0 * (b1 - b0) / (t1 - t0) * (os.cpu_count() or 1), 1) if t1 > t0 else None
    n = d['requests']
    d['wrk_cpu_us_per_req'] = round(d['wrk_cpu_ticks'] / hz * 1e6 / n, 2) \
        if d['wrk_cpu_ticks'] is not None and n else None
    if d['rps'] is None:
        notes.append('%s round %s: wrk failed (rc %s): %s' % (v, r, rc, text.strip().replace('\n', ' ')[:300]))
    if d['errors']:
        notes.append('%s round %s: wrk %s' % (v, r, d['errors']))
    if d['non2xx']:
        notes.append('%s round %s: %d non-2xx responses' % (v, r, d['non2xx']))
    return d, notes


def per_request(ticks, hz, n):
    return round(ticks / hz * 1e6 / n, 2) if n else None


def header_lines(title, load_desc, env):
    out = [title] + load_desc + ['binaries: %s' % env.get('binaries', '?')]
    out.append('load average before %s, after %s%s' % (
        env.get('load_before', '?'), env.get('load_after', '?'),
        '  (busy machine: figures are noisy)' if busy_machine(env) else ''))
    out.append(machine_line(env))
    return out


class Figures:
    """The medians and spreads of a benchmark's rounds per variant, as the
    tables show them."""

    def __init__(self, runs, keys):
        self.runs = runs
        self.med, self.spread = medians(runs, keys)

    def g(self, v, k):
        return self.med[v].get(k)

    def c(self, v, k, fmt):
        x = self.med[v].get(k)
        return 'n/a' if x is None else fmt % x

    def sp(self, v, k):
        s = self.spread[v].get(k)
        return 'n/a' if not s or s['half_range_pct'] is None else '%.0f%%' % s['half_range_pct']

    def versus(self, k, x, a='sidecar', b='haproxy'):
        """"A vs B us (RATIO)" for a target on figure k, '-' without one."""
        return '-' if x is None else '%s vs %s us (%s)' % (self.c(a, k, '%.1f'), self.c(b, k, '%.1f'), fmt_ratio(x))


def variant_table(f, variants, labels, cols):
    """One line per variant; cols: (heading, unit, width, key, format), format
    None for the key's spread (+-). A units line when a column has a unit."""
    row = '%-30s' + ''.join(' %%%ds' % w for _, _, w, _, _ in cols)
    hdr = row % (('variant',) + tuple(h for h, _, _, _, _ in cols))
    out = [hdr]
    if any(u for _, u, _, _, _ in cols):
        out.append(row % (('',) + tuple(u for _, u, _, _, _ in cols)))
    out.append('-' * len(hdr))
    for v in variants:
        out.append(row % ((labels[v],) + tuple(f.sp(v, k) if fmt is None else f.c(v, k, fmt)
                                               for _, _, _, k, fmt in cols)))
    return out


def report_rounds(b, parsed, out, dur, rounds, quick, hz):
    """The report of a benchmark of interleaved rounds per variant (intercept,
    h2): the header, the variants' table, b's own lines, idle memory, the
    ratios of medians, the targets, the notes; printed and written as JSON.
    b: the benchmark's variants, columns, ratios and targets (IC_BENCH)."""
    runs, env, notes, mem_idle, extra = parsed
    f = Figures(runs, b['keys'])
    lines = header_lines(
        '%s: %d round%s x %d s per variant, interleaved (%s)%s; %d CPUs, kernel %s' % (
            b['title'], rounds, 's' if rounds != 1 else '', dur, b['order'], ', --quick' if quick else '',
            os.cpu_count(), platform.release()), b['load_desc'], env)
    lines.append('')
    lines += variant_table(f, b['variants'], b['labels'], b['columns'])
    lines += b['column_note'] + b['more'](f)
    lines.append('idle memory before the load (VmRSS RssAnon kB): %s' % ', '.join(
        '%s %s' % (v, mem_idle[v]) for v in b['variants'] if v in mem_idle))
    if 'mem_after' in extra.get('sidecar', {}):
        lines.append('sidecar memory after all loads (VmRSS RssAnon kB): %s' % extra['sidecar']['mem_after'])
    lines.append('')
    rl, ratios = ratio_lines(runs, f.med, b['ratios'], 36)
    lines += rl + [b['ratio_note'], '']
    T = b['targets'](f)
    lines += target_lines(T, 40, 28)
    more = b['json_more'](f) if 'json_more' in b else {}
    lines += b['reference'] + note_lines(notes)
    print('\n'.join(lines))
    write_json(out, dict(more, **{
        'benchmark': b['name'], 'duration_s': dur, 'rounds': rounds, 'quick': quick,
        'cpus': os.cpu_count(), 'kernel': platform.release(), 'clk_tck': hz, 'load': b['load'],
        'variants': b['desc'], 'env': env, 'medians': f.med, 'spread': f.spread, 'ratios': ratios,
        'targets': T, 'mem_idle': mem_idle, 'extra': extra, 'runs': runs, 'notes': notes, 'table': lines}))


# ------------------------------------------------------------------ intercept
IC_V = ['app', 'sidecar', 'haproxy', 'nginx', 'icpt', 'relay', 'app1', 'icpt1', 'relay1']
IC_LABEL = {'app': 'a app alone: nginx :80',
            'sidecar': 'b kbridge sidecar :8081',
            'haproxy': 'c HAProxy :8082',
            'nginx': 'd nginx proxy :8083',
            'icpt': 'e sidecar -> intercept (bob)',
            'relay': 'f relay chain (floor) -> bob',
            'app1': 'a1 app alone, -c1',
            'icpt1': 'e1 intercept (bob), -c1',
            'relay1': 'f1 relay chain (floor), -c1'}
IC_CONNS = {'app1': 1, 'icpt1': 1, 'relay1': 1}  # wrk's connections when not 50
IC_DESC = {
    'app': 'the app (nginx, 1 worker, access log on) in the web pod on :80, no proxy',
    'sidecar': 'kbridge-agent sidecar :8081 -> 127.0.0.1:80 while bob\'s header intercept x-dev=bob is active; '
               'requests carry no x-dev header',
    'haproxy': 'HAProxy (nbthread 1, http mode, keep-alive both sides, no logging) :8082: use_backend dev if '
               '{ req.hdr(x-dev) -m str bob }, default 127.0.0.1:80',
    'nginx': 'nginx (1 worker, no access log) :8083: map $http_x_dev -> upstream (keepalive 32, HTTP/1.1, '
             'Connection ""), default 127.0.0.1:80',
    'icpt': 'the sidecar :8081 with "x-dev: bob": sidecar -> manager -> bob\'s kbridged -> nginx 127.0.0.1:8080 '
            'in bob\'s namespace',
    'relay': 'the floor of e: the same requests (with "x-dev: bob") through three plain TCP relays (HAProxy mode '
             'tcp, nbthread 1, no log, no TLS, no HTTP parsing) where e\'s hops are: web pod :8084 -> the manager\'s '
             'Service 10.96.0.20:8445 -> mgr pod :8445 -> 10.96.0.21:8090 (node DNAT + masquerade) -> bob :8090 -> '
             'nginx 127.0.0.1:8080 in bob\'s namespace',
    'app1': 'a) with wrk -c1: one request at a time',
    'icpt1': 'e) with wrk -c1: one request at a time',
    'relay1': 'f) with wrk -c1: one request at a time'}
IC_KEYS = ['rps', 'p50_us', 'p99_us', 'cpu_us_per_req', 'vmrss_kib', 'rssanon_kib', 'app_cpu_us_per_req',
           'path_cpu_us_per_req', 'upstream_conns', 'wrk_cpu_us_per_req', 'sleeps_per_req', 'host_busy_pct',
           'total_cpu_us_per_req', 'path_per_app_cpu']
IC_HOPS = ['sidecar', 'manager', 'kbridged']  # e, e1: the path's processes, as "split" records them
RELAY_HOPS = ['relay_web', 'relay_mgr', 'relay_bob']  # f, f1: the relays, in the same places
IC_SPLIT = {'icpt': IC_HOPS, 'icpt1': IC_HOPS, 'relay': RELAY_HOPS, 'relay1': RELAY_HOPS}
IC_KEYS += ['%s_%s_per_req' % (h, k) for k in ('cpu_us', 'sleeps', 'sys_us') for h in IC_HOPS + RELAY_HOPS]
# e, e1, f, f1: the system (kernel) and user parts of the path's CPU, and the
# system part of bob's nginx's, as the "split" lines' last fields give them
IC_KEYS += ['path_sys_us_per_req', 'path_user_us_per_req', 'app_sys_us_per_req']
# e, e1, f, f1: TCP segments sent in each namespace of the path and IP
# datagrams the node forwarded, as "segs" records them
IC_SEGS = ['segs_web', 'segs_mgr', 'segs_bob', 'fwd_node']
IC_KEYS += ['%s_per_req' % k for k in IC_SEGS]


def path_variant(v):
    """e, e1, f, f1: a path of three processes ending at bob's local nginx."""
    return v.startswith('icpt') or v.startswith('relay')


def intercept_split(runs, extra, hz):
    """e, e1 (f, f1): the path's CPU and sleeps per request, process by
    process, from the "split" lines (VARIANT-ROUND, then CPU ticks and
    voluntary context switches of the sidecar, the manager and bob's kbridged,
    or of the web, mgr and bob relays), and its TCP segments per request,
    namespace by namespace, from the "segs" lines, into each run."""
    for v, hops in IC_SPLIT.items():
        for d in runs.get(v, []):
            key, n = '%s-%s' % (v, d['round']), d['requests']
            if not n:
                continue
            f = extra.get('split', {}).get(key, '').split()
            nh = len(hops)
            if len(f) in (2 * nh, 3 * nh + 1):
                for i, h in enumerate(hops):
                    d['%s_cpu_us_per_req' % h] = per_request(int(f[i]), hz, n)
                    d['%s_sleeps_per_req' % h] = round(int(f[nh + i]) / n, 3)
            if len(f) == 3 * nh + 1:
                # then each hop's system ticks and the app's
                for i, h in enumerate(hops):
                    d['%s_sys_us_per_req' % h] = per_request(int(f[2 * nh + i]), hz, n)
                sys_t = sum(int(x) for x in f[2 * nh:3 * nh])
                d['path_sys_us_per_req'] = per_request(sys_t, hz, n)
                d['path_user_us_per_req'] = per_request(sum(int(x) for x in f[:nh]) - sys_t, hz, n)
                d['app_sys_us_per_req'] = per_request(int(f[3 * nh]), hz, n)
            f = extra.get('segs', {}).get(key, '').split()
            if len(f) == len(IC_SEGS):
                for k, x in zip(IC_SEGS, f):
                    d['%s_per_req' % k] = round(int(x) / n, 3)


def intercept_runs(results, hz):
    """run lines: VARIANT ROUND SECS CPU APP PATH WALL_NS RSS ANON RC UP VCS H0 H1 SERVED WRK_OUT"""

    def run(fields, notes):
        v, r, secs, cpu, app, path, wall, rss, anon, rc, up, vcs, h0, h1, served, outf = fields
        d, wrk_notes = wrk_round(v, r, rc, read_text(outf), hz, wall, h0, h1)
        n = d['requests']
        d.update({'seconds': int(secs), 'cpu_ticks': int(cpu), 'app_cpu_ticks': int(app),
                  'path_cpu_ticks': int(path), 'vmrss_kib': None if rss == 'null' else int(rss),
                  'rssanon_kib': None if anon == 'null' else int(anon), 'wrk_rc': int(rc),
                  'upstream_conns': int(up), 'server_logged': int(served)})
        d['sleeps_per_req'] = round(int(vcs) / n, 3) if n else None
        d['cpu_us_per_req'] = per_request(d['cpu_ticks'], hz, n)
        d['app_cpu_us_per_req'] = per_request(d['app_cpu_ticks'], hz, n)
        icpt = path_variant(v)
        d['path_cpu_us_per_req'] = per_request(d['path_cpu_ticks'], hz, n) if icpt else None
        # e, e1, f, f1: the app is bob's local nginx; the path's CPU in its units
        d['path_per_app_cpu'] = None
        if icpt and d['path_cpu_us_per_req'] is not None and d['app_cpu_us_per_req']:
            d['path_per_app_cpu'] = round(d['path_cpu_us_per_req'] / d['app_cpu_us_per_req'], 3)
        # one request in flight per connection: the latencies of a
        # connection cannot add up to more than the run's length
        conns = IC_CONNS.get(v, 50)
        # (not checked at -c1: wrk's average there is off on a busy machine)
        if n and d['lat_avg_us'] is not None and conns > 1:
            d['lat_overlap'] = round(n * d['lat_avg_us'] / 1e6 / (conns * d['wall_s']), 3)
            if d['lat_overlap'] > 1.05:
                notes.append('%s round %s: wrk\'s latencies add up to %.1fx %d connection(s) x the run time '
                             '(avg %.0f us x %d responses): impossible with one request in flight per '
                             'connection; more responses than requests, or a clock jump' % (
                                 v, r, d['lat_overlap'], conns, d['lat_avg_us'], n))
        if n and abs(d['server_logged'] - n) > 50 + n // 1000:
            notes.append('%s round %s: the server logged %d requests, wrk counted %d responses' % (
                v, r, d['server_logged'], n))
        notes += wrk_notes
        if None not in (d['cpu_us_per_req'], d['wrk_cpu_us_per_req'], d['app_cpu_us_per_req']):
            d['total_cpu_us_per_req'] = round(
                d['wrk_cpu_us_per_req'] + (d['app_cpu_us_per_req'] if v != 'app' else 0) +
                (d['path_cpu_us_per_req'] if icpt else d['cpu_us_per_req']), 2)
        return v, d
    got = split_results(results, IC_V, run)
    intercept_split(got[0], got[4], hz)
    return got


def ic_cpu_lines(f):
    """Where the CPU goes, and the intercept path's CPU against bob's nginx."""
    out = ['', 'where the CPU goes (medians)           %s' % ' '.join('%8s' % v for v in IC_V)]
    for k, lab, fmt in (('wrk_cpu_us_per_req', 'wrk (load generator) CPU us/req', '%.1f'),
                        ('app_cpu_us_per_req', 'app nginx CPU us/req', '%.1f'),
                        ('total_cpu_us_per_req', 'wrk + proxy + app CPU us/req', '%.1f'),
                        ('sleeps_per_req', 'proxy sleeps (vol. ctx sw.)/req', '%.2f'),
                        ('upstream_conns', 'proxy -> app connections', '%.0f'),
                        ('host_busy_pct', 'host CPU busy, % of 1 core', '%.0f')):
        out.append('  %-36s %s' % (lab, ' '.join('%8s' % f.c(v, k, fmt) for v in IC_V)))
    out += ['  (a: app = the proxy, connections = wrk\'s; e: app = bob\'s local nginx, total includes manager +',
            '   bob\'s kbridged, connections are kbridged\'s to bob\'s nginx; host busy counts every process on the',
            '   machine, ours or not)']
    out.append('e) whole intercept path CPU per request (sidecar + manager + bob\'s kbridged): %s us, %s x bob\'s '
               'local nginx (%s us)' % (f.c('icpt', 'path_cpu_us_per_req', '%.1f'),
                                        f.c('icpt', 'path_per_app_cpu', '%.2f'),
                                        f.c('icpt', 'app_cpu_us_per_req', '%.1f')))
    out.append('e1) the same, one request at a time: %s us, %s x bob\'s nginx (%s us)' % (
        f.c('icpt1', 'path_cpu_us_per_req', '%.1f'), f.c('icpt1', 'path_per_app_cpu', '%.2f'),
        f.c('icpt1', 'app_cpu_us_per_req', '%.1f')))
    for v in ('icpt', 'icpt1'):
        if f.g(v, 'sidecar_cpu_us_per_req') is not None:
            out.append('%s) by process, CPU us / sleeps per request: %s' % ('e' if v == 'icpt' else 'e1', ', '.join(
                '%s %s / %s' % (h, f.c(v, '%s_cpu_us_per_req' % h, '%.1f'), f.c(v, '%s_sleeps_per_req' % h, '%.2f'))
                for h in IC_HOPS)))
    out += relay_lines(f)
    out += kernel_lines(f)
    for v, lab in (('icpt', 'e'), ('icpt1', 'e1'), ('relay', 'f'), ('relay1', 'f1')):
        if f.g(v, 'segs_web_per_req') is not None:
            out.append('%s) TCP segments sent per request: web pod %s, mgr pod %s, bob %s (his nginx\'s answers '
                       'among them); IP datagrams the node forwarded %s' % (
                           lab, f.c(v, 'segs_web_per_req', '%.2f'), f.c(v, 'segs_mgr_per_req', '%.2f'),
                           f.c(v, 'segs_bob_per_req', '%.2f'), f.c(v, 'fwd_node_per_req', '%.2f')))
    return out


def relay_floor(f):
    """f, f1 against e, e1: the floor any three-hop relay reaches here, and
    kbridge's path in its units, whole and hop by hop (sidecar / web relay,
    manager / mgr relay, kbridged / bob's relay)."""
    fl = {'path_cpu_us_per_req': f.g('relay', 'path_cpu_us_per_req'),
          'path_per_app_cpu': f.g('relay', 'path_per_app_cpu'),
          'c1_path_cpu_us_per_req': f.g('relay1', 'path_cpu_us_per_req'),
          'c1_rps_per_app': ratio(f.g('relay1', 'rps'), f.g('app1', 'rps')),
          'by_relay_cpu_us_per_req': {h: f.g('relay', '%s_cpu_us_per_req' % h) for h in RELAY_HOPS},
          'c1_by_relay_cpu_us_per_req': {h: f.g('relay1', '%s_cpu_us_per_req' % h) for h in RELAY_HOPS},
          'intercept_per_relay': {
              'path_cpu': ratio(f.g('icpt', 'path_cpu_us_per_req'), f.g('relay', 'path_cpu_us_per_req')),
              'c1_path_cpu': ratio(f.g('icpt1', 'path_cpu_us_per_req'), f.g('relay1', 'path_cpu_us_per_req')),
              'c1_rps': ratio(f.g('icpt1', 'rps'), f.g('relay1', 'rps')),
              'by_hop_cpu': {'%s/%s' % (a, b): ratio(f.g('icpt', '%s_cpu_us_per_req' % a),
                                                     f.g('relay', '%s_cpu_us_per_req' % b))
                             for a, b in zip(IC_HOPS, RELAY_HOPS)},
              'c1_by_hop_cpu': {'%s/%s' % (a, b): ratio(f.g('icpt1', '%s_cpu_us_per_req' % a),
                                                        f.g('relay1', '%s_cpu_us_per_req' % b))
                                for a, b in zip(IC_HOPS, RELAY_HOPS)}}}
    for k, x in list(fl['intercept_per_relay'].items()):
        fl['intercept_per_relay'][k] = {a: None if y is None else round(y, 4) for a, y in x.items()} \
            if isinstance(x, dict) else None if x is None else round(x, 4)
    for k in ('c1_rps_per_app',):
        fl[k] = None if fl[k] is None else round(fl[k], 4)
    return fl


def relay_lines(f):
    if f.g('relay', 'path_cpu_us_per_req') is None and f.g('relay1', 'rps') is None:
        return []
    fl = relay_floor(f)
    ipr = fl['intercept_per_relay']
    out = ['f) the floor, three plain TCP relays (HAProxy mode tcp) where e\'s hops are: %s us per request, %s x '
           'bob\'s local nginx (%s us)' % (f.c('relay', 'path_cpu_us_per_req', '%.1f'),
                                           f.c('relay', 'path_per_app_cpu', '%.2f'),
                                           f.c('relay', 'app_cpu_us_per_req', '%.1f')),
           'f1) the same, one request at a time: %s us, %s the app alone\'s req/s' % (
               f.c('relay1', 'path_cpu_us_per_req', '%.1f'), fmt_ratio(fl['c1_rps_per_app']))]
    for v in ('relay', 'relay1'):
        if f.g(v, 'relay_web_cpu_us_per_req') is not None:
            out.append('%s) by relay, CPU us / sleeps per request: %s' % ('f' if v == 'relay' else 'f1', ', '.join(
                '%s %s / %s' % (h[len('relay_'):], f.c(v, '%s_cpu_us_per_req' % h, '%.1f'),
                                f.c(v, '%s_sleeps_per_req' % h, '%.2f')) for h in RELAY_HOPS)))
    out.append('intercept / relay chain: CPU per request %s (-c1 %s), -c1 req/s %s' % (
        fmt_ratio(ipr['path_cpu']), fmt_ratio(ipr['c1_path_cpu']), fmt_ratio(ipr['c1_rps'])))
    for lab, k in (('e/f', 'by_hop_cpu'), ('e1/f1', 'c1_by_hop_cpu')):
        if any(x is not None for x in ipr[k].values()):
            out.append('  %s CPU by hop: %s' % (lab, ', '.join('%s %s' % (n.replace('/relay_', ' / '), fmt_ratio(x))
                                                             for n, x in ipr[k].items())))
    return out


def kernel_bound(f, v):
    """e or f at -c50: the system (kernel) part of the path's CPU per
    request against bob's nginx's whole CPU, and the user time the three
    processes could spend at 2.5x his nginx with the kernel's part as it is
    (issue 17, point 2a); None without the system ticks."""
    ps, pu = f.g(v, 'path_sys_us_per_req'), f.g(v, 'path_user_us_per_req')
    app = f.g(v, 'app_cpu_us_per_req')
    if None in (ps, pu, app) or not app:
        return None
    budget = 2.5 * app - ps
    return {'path_sys_us_per_req': ps, 'path_user_us_per_req': pu, 'app_cpu_us_per_req': app,
            'app_sys_us_per_req': f.g(v, 'app_sys_us_per_req'),
            'path_sys_per_app_cpu': round(ps / app, 3),
            'user_budget_us_at_2_5x': round(budget, 2),
            'user_budget_share': round(budget / pu, 3) if pu > 0 and budget > 0 else None}


def kernel_lines(f):
    out = []
    for v, lab, hops in (('icpt', 'e', IC_HOPS), ('relay', 'f', RELAY_HOPS)):
        kb = kernel_bound(f, v)
        if kb is None:
            continue
        out.append('%s) system (kernel) time per request: %.1f us (%s), %.2f x bob\'s nginx\'s whole CPU (%.1f us, '
                   '%s us of it system); user time %.1f us' % (
                       lab, kb['path_sys_us_per_req'],
                       ', '.join('%s %s' % (h.replace('relay_', ''), f.c(v, '%s_sys_us_per_req' % h, '%.1f'))
                                 for h in hops),
                       kb['path_sys_per_app_cpu'], kb['app_cpu_us_per_req'], f.c(v, 'app_sys_us_per_req', '%.1f'),
                       kb['path_user_us_per_req']))
        budget, share = kb['user_budget_us_at_2_5x'], kb['user_budget_share']
        if budget <= 0:
            out.append('   the kernel\'s part alone is over 2.5x bob\'s nginx')
            continue
        out.append('   at 2.5x bob\'s nginx, with the kernel\'s part as it is, the three would have %.1f us of user '
                   'time per request%s' % (budget, ' (they spend none)' if share is None else
                                           ': %.0f %% of the %.1f us they spend' % (
                                               100 * share, kb['path_user_us_per_req'])))
    return out


def ic_floor(f):
    """The JSON's "floor": f and f1's figures and e / f; "kernel_bound": the
    system part of e's and f's CPU and the user time left at 2.5x."""
    return {'floor': relay_floor(f),
            'kernel_bound': {'icpt': kernel_bound(f, 'icpt'), 'relay': kernel_bound(f, 'relay')}}


def ic_targets(f):
    T = []
    x = ratio(f.g('sidecar', 'rps'), f.g('haproxy', 'rps'))
    target(T, 'sidecar req/s >= 1.0x HAProxy', x, None if x is None else x >= 1.0, fmt_ratio(x))
    x = ratio(f.g('sidecar', 'p99_us'), f.g('haproxy', 'p99_us'))
    target(T, 'sidecar p99 <= 1.1x HAProxy', x, None if x is None else x <= 1.1, fmt_ratio(x))
    x = ratio(f.g('sidecar', 'cpu_us_per_req'), f.g('haproxy', 'cpu_us_per_req'))
    target(T, 'sidecar CPU/request <= HAProxy', x, None if x is None else x <= 1.0, f.versus('cpu_us_per_req', x))
    x = f.g('sidecar', 'rssanon_kib')
    mx = f.spread['sidecar'].get('rssanon_kib', {}).get('max')
    target(T, 'sidecar RssAnon < 4 MiB under load', x, None if x is None else x < 4096,
           '-' if x is None else '%.0f kB (max %s)' % (x, mx))
    # the intercept path's two targets, then the same for the floor: can
    # any three-hop relay meet them here?
    for v, cpu_lab, c1_lab in (('icpt', 'intercept path CPU <= 2.5x local app',
                                'intercept -c1 req/s >= 0.5x app alone'),
                               ('relay', 'floor: relay chain CPU <= 2.5x local app',
                                'floor: relay -c1 req/s >= 0.5x app alone')):
        x = f.g(v, 'path_per_app_cpu')
        target(T, cpu_lab, x, None if x is None else x <= 2.5,
               '-' if x is None else '%s vs %s us (%s)' % (f.c(v, 'path_cpu_us_per_req', '%.1f'),
                                                          f.c(v, 'app_cpu_us_per_req', '%.1f'), fmt_ratio(x)))
        x = ratio(f.g(v + '1', 'rps'), f.g('app1', 'rps'))
        target(T, c1_lab, x, None if x is None else x >= 0.5, fmt_ratio(x))
    return T


IC_BENCH = {
    'name': 'intercept', 'variants': IC_V, 'labels': IC_LABEL, 'desc': IC_DESC, 'keys': IC_KEYS,
    'title': 'kbridge intercept benchmark', 'order': 'a b c d e f ...',
    'load_desc': ['load: wrk -t1 -c50 (keep-alive) --latency in the api pod, straight to the web pod 10.244.1.10 on each',
                  '      variant\'s port (pod to pod through the node\'s routing; no service DNAT in the way)'],
    'load': 'wrk -t1 -c50 --latency --timeout 5s, keep-alive, from the api pod to the web pod 10.244.1.10 '
            'directly on each port (no service DNAT)',
    'columns': [('req/s', '(median)', 8, 'rps', '%.0f'), ('+-', '', 6, 'rps', None),
                ('p50 us', '', 8, 'p50_us', '%.0f'), ('p99 us', '', 8, 'p99_us', '%.0f'),
                ('+-', '', 6, 'p99_us', None), ('CPU us/r', '', 9, 'cpu_us_per_req', '%.1f'),
                ('VmRSS', 'kB', 8, 'vmrss_kib', '%.0f'), ('RssAnon', 'kB', 8, 'rssanon_kib', '%.0f')],
    'column_note': ['(+- = half the min..max range over the rounds, in % of the median; CPU us/r = utime+stime of the',
                    ' proxy process per request: a) the app nginx master+worker, b/e) the sidecar, c) haproxy, d) nginx',
                    ' master+worker, f) the three relays; memory of the proxy (a: the app worker, f: the web pod\'s',
                    ' relay) sampled 0.3 s before the load ends)'],
    'more': ic_cpu_lines,
    'ratios': [('sidecar / HAProxy      req/s', 'sidecar', 'haproxy', 'rps'),
               ('sidecar / HAProxy      p99', 'sidecar', 'haproxy', 'p99_us'),
               ('sidecar / HAProxy      CPU/request', 'sidecar', 'haproxy', 'cpu_us_per_req'),
               ('sidecar / HAProxy      RssAnon', 'sidecar', 'haproxy', 'rssanon_kib'),
               ('sidecar / nginx proxy  req/s', 'sidecar', 'nginx', 'rps'),
               ('sidecar / nginx proxy  p99', 'sidecar', 'nginx', 'p99_us'),
               ('sidecar / nginx proxy  CPU/request', 'sidecar', 'nginx', 'cpu_us_per_req'),
               ('sidecar / app alone    req/s', 'sidecar', 'app', 'rps'),
               ('sidecar / app alone    p99', 'sidecar', 'app', 'p99_us'),
               ('HAProxy / app alone    req/s', 'haproxy', 'app', 'rps'),
               ('nginx proxy / app      req/s', 'nginx', 'app', 'rps'),
               ('intercept / app alone  req/s', 'icpt', 'app', 'rps'),
               ('intercept / sidecar    req/s', 'icpt', 'sidecar', 'rps'),
               ('intercept / app alone  p99', 'icpt', 'app', 'p99_us'),
               ('intercept / app alone  req/s -c1', 'icpt1', 'app1', 'rps'),
               ('intercept / app alone  p50 -c1', 'icpt1', 'app1', 'p50_us'),
               ('relay chain / app alone req/s -c1', 'relay1', 'app1', 'rps'),
               ('intercept / relay chain CPU/request', 'icpt', 'relay', 'path_cpu_us_per_req'),
               ('intercept / relay chain req/s', 'icpt', 'relay', 'rps'),
               ('intercept / relay chain req/s -c1', 'icpt1', 'relay1', 'rps'),
               ('intercept / relay chain p50 -c1', 'icpt1', 'relay1', 'p50_us'),
               ('sidecar / web relay    CPU/request', 'icpt', 'relay', 'sidecar_cpu_us_per_req',
                'relay_web_cpu_us_per_req'),
               ('manager / mgr relay    CPU/request', 'icpt', 'relay', 'manager_cpu_us_per_req',
                'relay_mgr_cpu_us_per_req'),
               ('kbridged / bob relay   CPU/request', 'icpt', 'relay', 'kbridged_cpu_us_per_req',
                'relay_bob_cpu_us_per_req')],
    'ratio_note': '(req/s: higher is better; p99, CPU, memory: lower is better)',
    'targets': ic_targets,
    'json_more': ic_floor,
    'reference': ['', 'reference (issue 3, measured elsewhere): HAProxy ~0.57x the app\'s req/s, ~35 us CPU per request,',
                  '  15 MiB VmRSS of which ~4.4 MiB RssAnon under load; ratios move by about +-10 % between identical runs'],
}


def report_intercept(res, out, dur, rounds, quick, hz):
    report_rounds(IC_BENCH, intercept_runs(read_results(res), hz), out, dur, rounds, quick, hz)


# ------------------------------------------------------------------ h2
H2_V = ['app', 'sidecar', 'haproxy']
H2_LABEL = {'app': 'a app alone: nginx h2c :81', 'sidecar': 'b kbridge sidecar :8082',
            'haproxy': 'c HAProxy proto h2 :8083'}
H2_DESC = {
    'app': 'the app (nginx h2c, 1 worker, no log) in the web pod on :81, no proxy',
    'sidecar': 'kbridge-agent sidecar :8082 -> 127.0.0.1:81 (h2c) while bob\'s header intercept x-dev=bob is '
               'active: each stream routed by agent/h2route.c; requests carry no x-dev header',
    'haproxy': 'HAProxy (nbthread 1, http mode, "proto h2" on bind and servers, no logging) :8083: use_backend '
               'dev if { req.hdr(x-dev) -m str bob }, default 127.0.0.1:81'}
H2_KEYS = ['rps', 'cpu_us_per_req', 'vmrss_kib', 'rssanon_kib', 'h2load_cpu_us_per_req', 'host_busy_pct']


def h2_runs(results, hz):
    """run lines: VARIANT ROUND SECS CPU WALL_NS RSS ANON RC H0 H1 H2LOAD_OUT"""

    def run(fields, notes):
        v, r, secs, cpu, wall, rss, anon, rc, h0, h1, outf = fields
        text = read_text(outf)
        d = parse_h2load(text)
        d.update({'round': int(r), 'seconds': int(secs), 'cpu_ticks': int(cpu),
                  'wall_s': round(int(wall) / 1e9, 3), 'h2load_rc': int(rc),
                  'vmrss_kib': None if rss == 'null' else int(rss),
                  'rssanon_kib': None if anon == 'null' else int(anon)})
        b0, t0 = map(int, h0.split(','))
        b1, t1 = map(int, h1.split(','))
        d['host_busy_pct'] = round(100.0 * (b1 - b0) / (t1 - t0) * (os.cpu_count() or 1), 1) if t1 > t0 else None
        n = d['succeeded']
        d['cpu_us_per_req'] = per_request(d['cpu_ticks'], hz, n)
        d['h2load_cpu_us_per_req'] = per_request(d['h2load_cpu_ticks'], hz, n) \
            if d['h2load_cpu_ticks'] is not None else None
        if d['rps'] is None or not n:
            notes.append('%s round %s: h2load failed (rc %s): %s' % (v, r, rc, text.strip().replace('\n', ' ')[:300]))
        elif d['failed'] or d['errored'] or d['timeout'] or d['non2xx']:
            notes.append('%s round %s: h2load: %d failed, %d errored, %d timeout, %d non-2xx' % (
                v, r, d['failed'], d['errored'], d['timeout'], d['non2xx'] or 0))
        return v, d
    return split_results(results, H2_V, run)


def h2_targets(f):
    T = []
    x = ratio(f.g('sidecar', 'rps'), f.g('haproxy', 'rps'))
    target(T, 'sidecar req/s >= 1.0x HAProxy', x, None if x is None else x >= 1.0, fmt_ratio(x))
    x = ratio(f.g('sidecar', 'cpu_us_per_req'), f.g('haproxy', 'cpu_us_per_req'))
    target(T, 'sidecar CPU/request <= 1.0x HAProxy', x, None if x is None else x <= 1.0,
           f.versus('cpu_us_per_req', x))
    return T


H2_BENCH = {
    'name': 'h2', 'variants': H2_V, 'labels': H2_LABEL, 'desc': H2_DESC, 'keys': H2_KEYS,
    'title': 'kbridge HTTP/2 routing benchmark', 'order': 'a b c ...',
    'load_desc': ['load: h2load -t1 -c16 -m10 (h2c prior knowledge, GET /) in the api pod, straight to the web pod',
                  '      10.244.1.10 on each variant\'s port; bob\'s x-dev=bob intercept active on the sidecar'],
    'load': 'h2load -t1 -c16 -m10 -D SECONDS, h2c prior knowledge, GET /, from the api pod to the web pod '
            '10.244.1.10 directly on each port',
    'columns': [('req/s', '(median)', 9, 'rps', '%.0f'), ('+-', '', 6, 'rps', None),
                ('CPU us/r', '(proxy)', 9, 'cpu_us_per_req', '%.1f'),
                ('h2load', 'us/r', 9, 'h2load_cpu_us_per_req', '%.1f'),
                ('VmRSS', 'kB', 8, 'vmrss_kib', '%.0f'), ('RssAnon', 'kB', 8, 'rssanon_kib', '%.0f')],
    'column_note': ['(+- = half the min..max range over the rounds, in % of the median; CPU us/r = utime+stime per request',
                    ' of a) the app nginx master+worker, b) the sidecar, c) haproxy; memory sampled 0.3 s before the end)'],
    'more': lambda f: [],
    'ratios': [('sidecar / HAProxy      req/s', 'sidecar', 'haproxy', 'rps'),
               ('sidecar / HAProxy      CPU/request', 'sidecar', 'haproxy', 'cpu_us_per_req'),
               ('sidecar / HAProxy      RssAnon', 'sidecar', 'haproxy', 'rssanon_kib'),
               ('sidecar / app alone    req/s', 'sidecar', 'app', 'rps'),
               ('HAProxy / app alone    req/s', 'haproxy', 'app', 'rps')],
    'ratio_note': '(req/s: higher is better; CPU, memory: lower is better)',
    'targets': h2_targets,
    'reference': [],
}


def report_h2(res, out, dur, rounds, quick, hz):
    report_rounds(H2_BENCH, h2_runs(read_results(res), hz), out, dur, rounds, quick, hz)


# ------------------------------------------------------------------ preview
PV_V = ['straight', 'preview', 'haproxy']
PV_LABEL = {'straight': 'a straight to the service', 'preview': 'b preview listener',
            'haproxy': 'c HAProxy as the hop'}
PV_DESC = {
    'straight': 'mate -> NodePort 192.168.60.1:8000 (node DNAT) -> web pod sidecar :8081 -> app nginx :80',
    'preview': 'mate -> http://<token>.preview.kb.test:8080/ (node DNAT) -> manager preview listener (mgr pod) -> '
               'web.default.svc 10.96.1.1:80 -> sidecar (bob\'s intercept, path prefix not matched) -> app nginx :80',
    'haproxy': 'mate -> 192.168.60.1:8090 (node DNAT) -> HAProxy in the mgr pod (nbthread 1, keep-alive, no log, '
               'set-header x-kbridge-intercept-id) -> 10.96.1.1:80 -> sidecar -> app nginx :80'}
PV_KEYS = ['rps', 'p50_us', 'p90_us', 'p99_us', 'hop_cpu_us_per_req', 'down_cpu_us_per_req', 'wrk_cpu_us_per_req',
           'vmrss_kib', 'rssanon_kib', 'host_busy_pct']


def preview_runs(results, hz):
    """run lines: VARIANT ROUND SECS HOP_CPU DOWN_CPU WALL_NS RSS ANON RC H0 H1 WRK_OUT"""

    def run(fields, notes):
        v, r, secs, cpu, down, wall, rss, anon, rc, h0, h1, outf = fields
        d, wrk_notes = wrk_round(v, r, rc, read_text(outf), hz, wall, h0, h1)
        n = d['requests']
        d.update({'seconds': int(secs), 'hop_cpu_ticks': int(cpu), 'down_cpu_ticks': int(down),
                  'vmrss_kib': None if rss == 'null' else int(rss),
                  'rssanon_kib': None if anon == 'null' else int(anon), 'wrk_rc': int(rc)})
        d['hop_cpu_us_per_req'] = per_request(d['hop_cpu_ticks'], hz, n) if v != 'straight' else None
        d['down_cpu_us_per_req'] = per_request(d['down_cpu_ticks'], hz, n)
        notes += wrk_notes
        return v, d
    return split_results(results, PV_V, run)


def report_preview(res, out, dur, rounds, quick, hz):
    runs, env, notes, mem_idle, extra = preview_runs(read_results(res), hz)
    med, spread = medians(runs, PV_KEYS)
    g = lambda v, k: med[v].get(k)

    def c(v, k, fmt):
        x = g(v, k)
        return '-' if x is None else fmt % x

    def sp(v, k):
        s = spread[v].get(k)
        return '-' if not s or s['half_range_pct'] is None else '%.0f%%' % s['half_range_pct']
    lines = header_lines(
        'kbridge preview benchmark: %d round%s x %d s per variant, interleaved (a b c ...)%s; %d CPUs, kernel %s' % (
            rounds, 's' if rounds != 1 else '', dur, ', --quick' if quick else '', os.cpu_count(),
            platform.release()),
        ['load: wrk -t1 -c50 (keep-alive) --latency from mate (the teammate), GET / (the app: bob\'s intercept',
         '      only takes /kbridge-bench-none/)'], env)
    P = lines.append
    P('')
    row = '%-28s %8s %5s %8s %8s %5s %9s %9s %8s %8s'
    hdr = row % ('variant', 'req/s', '+-', 'p50 us', 'p99 us', '+-', 'hop CPU', 'side+app', 'wrk CPU', 'hop RSS')
    P(hdr)
    P(row % ('', '(median)', '', '', '', '', 'us/req', 'us/req', 'us/req', 'kB'))
    P('-' * len(hdr))
    for v in PV_V:
        P(row % (PV_LABEL[v], c(v, 'rps', '%.0f'), sp(v, 'rps'), c(v, 'p50_us', '%.0f'), c(v, 'p99_us', '%.0f'),
                 sp(v, 'p99_us'), c(v, 'hop_cpu_us_per_req', '%.1f'), c(v, 'down_cpu_us_per_req', '%.1f'),
                 c(v, 'wrk_cpu_us_per_req', '%.1f'), c(v, 'vmrss_kib', '%.0f')))
    P('(+- = half the min..max range over the rounds, in % of the median; hop CPU = utime+stime per request')
    P(' of the manager process (b) or HAProxy (c); side+app = the web sidecar and the app nginx, the same')
    P(' work behind every variant; hop RSS = VmRSS of the hop 0.3 s before the load ends)')
    P('idle memory of the hop before the load (VmRSS RssAnon kB): %s' % ', '.join(
        '%s %s' % (v, mem_idle[v]) for v in PV_V if v in mem_idle))
    if 'mem_after' in extra.get('preview', {}):
        P('manager memory after all loads (VmRSS RssAnon kB): %s' % extra['preview']['mem_after'])
    P('')
    rl, ratios = ratio_lines(runs, med, [
        ('preview / straight     req/s', 'preview', 'straight', 'rps'),
        ('preview / straight     p99', 'preview', 'straight', 'p99_us'),
        ('preview / HAProxy      req/s', 'preview', 'haproxy', 'rps'),
        ('preview / HAProxy      p99', 'preview', 'haproxy', 'p99_us'),
        ('preview / HAProxy      hop CPU/request', 'preview', 'haproxy', 'hop_cpu_us_per_req'),
        ('HAProxy / straight     req/s', 'haproxy', 'straight', 'rps')], 40)
    lines += rl
    P('(req/s: higher is better; p99, CPU: lower is better)')
    P('')
    T = []
    x = ratio(g('preview', 'hop_cpu_us_per_req'), g('haproxy', 'hop_cpu_us_per_req'))
    target(T, 'preview hop CPU/request <= HAProxy', x, None if x is None else x <= 1.0,
           '-' if x is None else '%s vs %s us (%s)' % (c('preview', 'hop_cpu_us_per_req', '%.1f'),
                                                      c('haproxy', 'hop_cpu_us_per_req', '%.1f'), fmt_ratio(x)))
    x = ratio(g('preview', 'rps'), g('straight', 'rps'))
    target(T, 'preview req/s >= 0.6x straight', x, None if x is None else x >= 0.6, fmt_ratio(x))
    lines += target_lines(T, 40, 28)
    P('')
    P('reference (issue 4): HAProxy measured elsewhere at about 35 us CPU per request')
    lines += note_lines(notes)
    print('\n'.join(lines))
    write_json(out, {
        'benchmark': 'preview', 'duration_s': dur, 'rounds': rounds, 'quick': quick,
        'cpus': os.cpu_count(), 'kernel': platform.release(), 'clk_tck': hz,
        'load': 'wrk -t1 -c50 --latency --timeout 5s, keep-alive, GET /, from mate',
        'variants': PV_DESC, 'env': env, 'medians': med, 'spread': spread, 'ratios': ratios,
        'targets': T, 'mem_idle': mem_idle, 'extra': extra, 'runs': runs, 'notes': notes, 'table': lines})


# ------------------------------------------------------------------ portforward
PF_V = ['kbridge-down', 'kubectl-down', 'kbridge-echo', 'kubectl-echo']


def portforward_section(results, down_mib, echo_mib):
    """The portforward rounds of a results file (run lines: VARIANT TEST ROUND
    GBIT_S TICKS BYTES [KWOK_TICKS APISERVER_TICKS]: CPU of the forwarder, of
    kwok and of kube-apiserver; echo moves BYTES each way) -> env, notes, and
    a dict with runs, medians, spread, ratios and the table's lines (what
    report_portforward and report_k8sconnect print)."""
    env, notes, runs = {}, [], {v: [] for v in PF_V}
    for mode, key, val in results:
        if mode == 'env':
            env[key] = val
        elif key == 'note':
            notes.append('%s: %s' % (mode, val))
        elif mode == 'run':
            f = (key + ' ' + val).split()
            v, t, r, g, ticks, nbytes = f[:6]
            hz = int(env.get('clk_tck', '100'))
            gb = int(nbytes) * (2 if t == 'echo' else 1) / 1e9
            per_gb = lambda x: round(int(x) / hz / gb, 3) if num(g) else None
            d = {'round': int(r), 'gbit_s': num(g), 'cpu_ticks': int(ticks), 'cpu_s_per_gb': per_gb(ticks)}
            if len(f) >= 8:
                d['kwok_s_per_gb'], d['apiserver_s_per_gb'] = per_gb(f[6]), per_gb(f[7])
            runs['%s-%s' % (v, t)].append(d)
    med, spread = medians(runs, ['gbit_s', 'cpu_s_per_gb', 'kwok_s_per_gb', 'apiserver_s_per_gb'])
    lines = []
    P = lines.append
    row = '%-16s %10s %5s %12s %10s %10s'
    P(row % ('variant', 'Gbit/s', '+-', 'forwarder', 'kwok', 'apiserver'))
    P(row % ('', '', '', 'CPU s/GB', 'CPU s/GB', 'CPU s/GB'))
    P('-' * 68)
    f3 = lambda x: '-' if x is None else '%.3f' % x
    for v in PF_V:
        s = spread[v].get('gbit_s')
        P(row % (v, f3(med[v].get('gbit_s')),
                 '-' if not s or s['half_range_pct'] is None else '%.0f%%' % s['half_range_pct'],
                 f3(med[v].get('cpu_s_per_gb')), f3(med[v].get('kwok_s_per_gb')),
                 f3(med[v].get('apiserver_s_per_gb'))))
    P('(median over the rounds; +- = half the min..max range in % of the median; CPU = utime+stime')
    P(' per GB moved (both ways for echo) of the forwarding process, kwok (the kubelet), kube-apiserver)')
    P('')
    rl, ratios = ratio_lines(runs, med, [
        ('kbridge / kubectl  down  Gbit/s', 'kbridge-down', 'kubectl-down', 'gbit_s'),
        ('kbridge / kubectl  echo  Gbit/s', 'kbridge-echo', 'kubectl-echo', 'gbit_s'),
        ('kbridge / kubectl  down  CPU/GB', 'kbridge-down', 'kubectl-down', 'cpu_s_per_gb'),
        ('kbridge / kubectl  echo  CPU/GB', 'kbridge-echo', 'kubectl-echo', 'cpu_s_per_gb')], 34)
    lines += rl
    P('(Gbit/s: higher is better; CPU/GB: lower is better)')
    return env, notes, {'down_mib': down_mib, 'echo_mib': echo_mib, 'medians': med, 'spread': spread,
                        'ratios': ratios, 'runs': runs, 'table': lines}


def pf_load_lines(down_mib, echo_mib):
    return ['load in ws through a forwarder on 127.0.0.1: down = curl GET of %d MiB from nginx in web;' % down_mib,
            '      echo = %d MiB to the echo pod and back at once (Gbit/s each way)' % echo_mib,
            'path: forwarder (admin) -> kube-apiserver -> kwok kubelet API -> the pod, the same for both']


def report_portforward(res, out, down_mib, echo_mib, rounds, quick):
    env, notes, pf = portforward_section(read_results(res), down_mib, echo_mib)
    lines = header_lines(
        'kbridge port-forward benchmark: %d round%s, interleaved%s; %d CPUs, kernel %s' % (
            rounds, 's' if rounds != 1 else '', ', --quick' if quick else '', os.cpu_count(), platform.release()),
        pf_load_lines(down_mib, echo_mib), env)
    lines += [''] + pf['table']
    lines += note_lines(notes)
    print('\n'.join(lines))
    write_json(out, {
        'benchmark': 'portforward', 'down_mib': down_mib, 'echo_mib': echo_mib, 'rounds': rounds,
        'quick': quick, 'cpus': os.cpu_count(), 'kernel': platform.release(), 'env': env,
        'medians': pf['medians'], 'spread': pf['spread'], 'ratios': pf['ratios'], 'runs': pf['runs'],
        'notes': notes, 'table': lines})


# ------------------------------------------------------------------ k8sconnect
KC_V = ['cold', 'warm']
# kbridge connect's KBRIDGE_TIMING fields -> the names in the runs
KC_TIMING = {'prepare_ms': 'prepare_ms', 'api_ms': 'api_ms', 'api_requests': 'api_requests',
             'csr_wait_ms': 'csr_wait_ms', 'daemon_ms': 'daemon_start_ms', 'connect_ms': 'daemon_connect_ms',
             'total_ms': 'cli_total_ms'}
KC_KEYS = ['cmd_ms', 'first_req_ms', 'total_ms', 'tries', 'prepare_ms', 'api_ms', 'api_requests', 'csr_wait_ms',
           'prepare_own_ms', 'daemon_start_ms', 'daemon_connect_ms', 'cli_total_ms', 'outside_cli_ms',
           'cluster_wait_ms', 'cluster_wait_pct', 'second_req_ms', 'netns_ms']


def parse_timing(text):
    """kbridge connect's KBRIDGE_TIMING line ("kbridge: timing: prepare_ms=1.5
    api_ms=..."): its fields as floats (the last such line), {} if none."""
    d = {}
    for line in text.splitlines():
        if line.startswith('kbridge: timing: '):
            d = {}
            for kv in line[len('kbridge: timing: '):].split():
                k, _, v = kv.partition('=')
                x = num(v)
                if k and x is not None:
                    d[k] = x
    return d


def kc_run(f, err_text):
    """kc line fields ROUND RC CMD_US REQ_US TOTAL_US TRIES [ERRFILE
    [SECOND_US NETNS_US]] and the command's stderr -> one run's figures
    (only round, rc, ok when it failed). SECOND: one more request after the
    first; NETNS: `ip netns exec timeout env true`, what wraps each command."""
    r, rc, cmd_us, req_us, tot_us, tries = f[:6]
    d = {'round': int(r), 'rc': int(rc), 'ok': rc == '0'}
    if not d['ok']:
        return d
    d.update({'cmd_ms': round(int(cmd_us) / 1e3, 1), 'first_req_ms': round(int(req_us) / 1e3, 1),
              'total_ms': round(int(tot_us) / 1e3, 1), 'tries': int(tries)})
    if len(f) >= 9:
        for k, x in (('second_req_ms', f[7]), ('netns_ms', f[8])):
            d[k] = round(num(x) / 1e3, 1) if num(x) is not None else None
    t = parse_timing(err_text)
    for k, name in KC_TIMING.items():
        d[name] = t.get(k)
    if all(d.get(k) is not None for k in ('prepare_ms', 'api_ms', 'csr_wait_ms')):
        # what the CLI did itself in prepare: kubeconfig, keys, checks, cache
        d['prepare_own_ms'] = round(d['prepare_ms'] - d['api_ms'] - d['csr_wait_ms'], 1)
        d['cluster_wait_ms'] = round(d['api_ms'] + d['csr_wait_ms'], 1)
        d['cluster_wait_pct'] = round(100 * d['cluster_wait_ms'] / d['total_ms'], 1) if d['total_ms'] else None
    if d.get('cli_total_ms') is not None:
        # exec, the dynamic loader, netns exec, exit: outside the CLI's clock
        d['outside_cli_ms'] = round(d['cmd_ms'] - d['cli_total_ms'], 1)
    return d


def k8sconnect_runs(results):
    """kc lines (VARIANT ROUND RC CMD_US REQ_US TOTAL_US TRIES ERRFILE) and
    kref lines (kubectl ROUND ok TCP_MS TLS_MS | kubectl ROUND fail WHY)."""
    env, notes = {}, []
    runs = {v: [] for v in KC_V + ['kubectl']}
    for mode, key, val in results:
        if mode == 'env':
            env[key] = val
        elif key == 'note':
            notes.append('%s: %s' % (mode, val))
        elif mode == 'kc' and key in KC_V:
            f = val.split()
            runs[key].append(kc_run(f, read_text(f[6]) if len(f) > 6 else ''))
        elif mode == 'kref':
            f = val.split()
            d = {'round': int(f[0]), 'ok': len(f) >= 4 and f[1] == 'ok'}
            if d['ok']:
                d['listen_ms'], d['tls_ms'] = num(f[2]), num(f[3])
            else:
                notes.append('kubectl port-forward round %s: %s' % (f[0], ' '.join(f[1:])[:200]))
            runs['kubectl'].append(d)
    return env, notes, runs


def report_k8sconnect(res, out, rounds, quick, down_mib, echo_mib, pf_rounds):
    results = read_results(res)
    env, notes, runs = k8sconnect_runs(results)
    _, pf_notes, pf = portforward_section(results, down_mib, echo_mib)
    notes += [n for n in pf_notes if n not in notes]
    med, spread = medians(runs, KC_KEYS + ['listen_ms', 'tls_ms'])
    lines = header_lines(
        'kbridge connect with a kubeconfig: %d round%s (cold, warm, kubectl reference interleaved), then '
        'portforward: %d round%s%s; %d CPUs, kernel %s' % (
            rounds, 's' if rounds != 1 else '', pf_rounds, 's' if pf_rounds != 1 else '',
            ', --quick' if quick else '', os.cpu_count(), platform.release()),
        ['connect: alice in ws, only her kubeconfig; the manager pod from kbridge install, reached through',
         '         the API server\'s port-forward (kube-apiserver -> kwok kubelet API -> the pod)',
         '  cold = a fresh cache (new key, CSR signed by the manager); warm = her cached certificate,',
         '         after kbridge quit and the previous forwarder gone; both to the first 200 from',
         '         curl http://web.default/ in ws'], env)
    P = lines.append
    P('')

    def cell(v, k, fmt='%.1f'):
        m, s = med[v].get(k), spread[v].get(k)
        if m is None:
            return '-'
        return (fmt % m) + (' (%s..%s)' % (fmt % s['min'], fmt % s['max']) if s['n'] > 1 else '')
    row = '%-52s %-24s %-24s'
    P(row % ('ms, median (min..max)', 'cold (new CSR)', 'warm (cached cert)'))
    P('-' * 100)
    for label, k, fmt in (
            ('kbridge connect -> first 200 (wall)', 'total_ms', '%.0f'),
            ('  the connect command (wall)', 'cmd_ms', '%.0f'),
            ('    prepare: identity, permissions, forwarder start', 'prepare_ms', '%.1f'),
            ('      of it API server requests', 'api_ms', '%.1f'),
            ('        (requests)', 'api_requests', '%.0f'),
            ('      of it sleeps waiting for the CSR signature', 'csr_wait_ms', '%.1f'),
            ('      of it the CLI itself', 'prepare_own_ms', '%.1f'),
            ('    kbridged start', 'daemon_start_ms', '%.1f'),
            ('    kbridged connect: session up via port-forward', 'daemon_connect_ms', '%.1f'),
            ('    exec, netns, exit (outside the CLI clock)', 'outside_cli_ms', '%.1f'),
            ('  connect returned -> first 200 (curl)', 'first_req_ms', '%.1f'),
            ('    (curl tries)', 'tries', '%.0f'),
            ('  a second request, for comparison (curl)', 'second_req_ms', '%.1f'),
            ('ip netns exec + timeout + env of /bin/true', 'netns_ms', '%.1f'),
            ('waiting for the API server in prepare', 'cluster_wait_ms', '%.1f'),
            ('  in % of connect -> first 200', 'cluster_wait_pct', '%.0f')):
        P(row % (label, cell('cold', k, fmt), cell('warm', k, fmt)))
    fails = {v: sum(1 for d in runs[v] if not d['ok']) for v in KC_V}
    P('(%d cold and %d warm runs; failed: %d, %d. "session up" includes the forwarder\'s WebSocket to' % (
        len(runs['cold']), len(runs['warm']), fails['cold'], fails['warm']))
    P(' the API server, kwok and the pod, and the TLS session to the manager: not separable here;')
    P(' every command here runs under ip netns exec, which a workstation does not have: its cost is the')
    P(' netns line, in "exec, netns, exit" and in each curl)')
    P('')
    P('reference, not a peer: kubectl port-forward -n kbridge svc/kbridge-manager as alice, start ->')
    P('  listening (first TCP accept): %s ms; -> first TLS handshake through it: %s ms' % (
        cell('kubectl', 'listen_ms', '%.0f'), cell('kubectl', 'tls_ms', '%.0f')))
    P('  (only a port: no identity, no session, no DNS; Telepresence is not available on this machine,')
    P('  so "Telepresence takes seconds" is not measured here)')
    P('')
    P('port-forward throughput through the same API server and kwok (scripts/benchmarks/portforward):')
    lines += pf_load_lines(down_mib, echo_mib) + ['']
    lines += pf['table']
    P('')
    T = []
    for v in KC_V:
        x = med[v].get('total_ms')
        target(T, '%s connect -> first request < 1 s' % v, x, None if x is None else x < 1000,
               '-' if x is None else '%.0f ms (median)' % x)
    for t in ('down', 'echo'):
        x = pf['ratios']['kbridge-%s/kubectl-%s gbit_s' % (t, t)]['value']
        target(T, 'port-forward %s Gbit/s >= 1.0x kubectl' % t, x, None if x is None else x >= 1.0, fmt_ratio(x))
    lines += target_lines(T, 44, 20)
    lines += note_lines(notes)
    print('\n'.join(lines))
    write_json(out, {
        'benchmark': 'k8sconnect', 'rounds': rounds, 'quick': quick, 'cpus': os.cpu_count(),
        'kernel': platform.release(), 'env': env, 'medians': med, 'spread': spread, 'runs': runs,
        'reference': 'kubectl port-forward svc/kbridge-manager: start -> listening, -> first TLS handshake; '
                     'Telepresence not available here',
        'targets': T, 'portforward': dict(pf, rounds=pf_rounds), 'notes': notes, 'table': lines})

# ------------------------------------------------------------------ kintercept
KI_V = ['app', 'sidecar', 'haproxy']
KI_LABEL = {'app': 'a app alone: nginx :8079',
            'sidecar': 'b injected sidecar (pod :80)',
            'haproxy': 'c HAProxy :8082'}
KI_COLUMNS = [('req/s', '', 8, 'rps', '%.0f'), ('+-', '', 6, 'rps', None), ('p50 us', '', 8, 'p50_us', '%.0f'),
              ('p99 us', '', 8, 'p99_us', '%.0f'), ('+-', '', 6, 'p99_us', None),
              ('CPU us/r', '', 9, 'cpu_us_per_req', '%.1f'), ('RssAnon', '', 8, 'rssanon_kib', '%.0f')]
KI_DESC = {
    'app': 'the app (nginx, 1 worker, access log on) in the injected pod, :8079, no proxy',
    'sidecar': 'the pod\'s :80, which init container kbridge-redirect\'s nftables rule sends to the webhook\'s '
               'sidecar :9901 -> 127.0.0.1:80, while alice\'s header intercept x-dev=alice is active; requests '
               'carry no x-dev header',
    'haproxy': 'HAProxy in the same pod (templates/haproxy-intercept.cfg, as scripts/bench intercept\'s c) '
               ':8082 -> 127.0.0.1:80'}
# ttfr line: ROUND RC PATCH_US READY_US DONE_US POD_US FIRST_US REG_US TRIES LOOKUP_US
# (us after the CLI's start; the pods' lookup before POD is taken out)
KI_PHASES = [('cli_patch_ms', 'CLI start -> pod template patched', 'kbridge'),
             ('rollout_ms', 'patched -> the CLI sees 2/2 ready', 'harness'),
             ('reg_ms', '  of it: sidecar start -> registered (last pod)', 'kbridge'),
             ('cli_after_ms', '2/2 ready -> the CLI exits (intercept made)', 'kbridge'),
             ('pod_ms', 'CLI exit -> first intercepted answer, pod IP', 'kbridge'),
             ('svc_ms', 'then through the Service (slice, DNAT follow)', 'harness'),
             ('kbridge_ms', 'kbridge\'s part', ''),
             ('harness_ms', 'the harness\'s part (the rest)', ''),
             ('total_ms', 'total: intercept -> first answer via the Service', '')]


def ttfr_runs(results):
    """The ttfr lines -> one dict per round (ms), the notes on them."""
    out, notes = [], []
    for mode, key, val in results:
        if mode != 'ttfr' or key == 'note':
            continue
        f = [key] + val.split()
        if len(f) != 10:
            notes.append('ttfr: a malformed line: %s %s' % (key, val))
            continue
        r, rc, patch, ready, done, pod, first, reg, tries, lookup = f
        ms = lambda x: None if x == 'null' else int(x) / 1000.0
        d = {'round': int(r), 'rc': int(rc), 'tries': int(tries), 'lookup_ms': ms(lookup)}
        if d['rc'] != 0:
            out.append(d)
            continue
        patch, ready, done, pod, first, reg = ms(patch), ms(ready), ms(done), ms(pod), ms(first), ms(reg)
        d.update({'cli_patch_ms': patch, 'rollout_ms': ready - patch, 'reg_ms': reg,
                  'cli_after_ms': done - ready, 'pod_ms': pod - done, 'svc_ms': first - pod, 'total_ms': first})
        d['kbridge_ms'] = patch + (reg or 0) + (done - ready) + (pod - done)
        d['harness_ms'] = first - d['kbridge_ms']
        if reg is None:
            notes.append('ttfr round %s: no sidecar registration time; kbridge\'s part leaves it out' % r)
        out.append(d)
    return out, notes


def hand_ratio(env):
    """The hand-run intercept benchmark's JSON (scripts/benchmarks/intercept,
    same invocation): its sidecar/HAProxy req/s ratio and medians, or None."""
    path = env.get('hand_json')
    if not path:
        return None
    try:
        with open(path) as f:
            j = json.load(f)
    except (OSError, ValueError):
        return None
    r = j.get('ratios', {}).get('sidecar/haproxy rps', {})
    m = j.get('medians', {})
    return {'ratio': r.get('value'), 'per_round': r.get('per_round'),
            'sidecar_rps': m.get('sidecar', {}).get('rps'), 'haproxy_rps': m.get('haproxy', {}).get('rps'),
            'app_rps': m.get('app', {}).get('rps'), 'rounds': j.get('rounds'), 'duration_s': j.get('duration_s'),
            'machine': j.get('env', {}).get('machine'), 'notes': j.get('notes', [])}


def report_kintercept(res, out, dur, rounds, quick, hz):
    results = read_results(res)
    tt, tt_notes = ttfr_runs(results)
    runs, env, notes, mem_idle, extra = intercept_runs([x for x in results if x[0] != 'ttfr' or x[1] == 'note'], hz)
    runs = {v: runs[v] for v in KI_V}
    notes += tt_notes
    f = Figures(runs, IC_KEYS)
    med, spread = f.med, f.spread
    ok = [d for d in tt if d['rc'] == 0]
    tmed = {k: summarize([d[k] for d in ok if d.get(k) is not None]) for k, _, _ in KI_PHASES
            if any(d.get(k) is not None for d in ok)}
    lines = header_lines(
        'kbridge intercept on a run workload, the webhook\'s sidecar: %d intercept round%s; %d round%s x %d s per '
        'wrk variant%s; %d CPUs, kernel %s' % (len(tt), 's' if len(tt) != 1 else '', rounds,
                                               's' if rounds != 1 else '', dur, ', --quick' if quick else '',
                                               os.cpu_count(), platform.release()),
        ['workload: Deployment kbi, 2 replicas of playground.kbridge.dev/hello run by follow-deployments --run,',
         '          Service kbi port 80 -> targetPort 80 (numeric: redirect init container + sidecar)'], env)
    P = lines.append
    P('')
    P('a) kbridge intercept kbi (no sidecar yet) -> first answer from alice\'s server through the Service')
    P('   (%d of %d rounds succeeded; ms, median and min..max)' % (len(ok), len(tt)))
    for k, label, who in KI_PHASES:
        if k not in tmed:
            continue
        m, s = tmed[k]
        P('   %-48s %8.0f   %s%s' % (label, m, '%.0f..%.0f' % (s['min'], s['max']),
                                      '   (%s)' % who if who else ''))
    if 'kbridge_ms' in tmed and tmed['total_ms'][0]:
        P('   kbridge\'s share of the total (medians): %.0f%%' % (100 * tmed['kbridge_ms'][0] / tmed['total_ms'][0]))
    P('   (the rollout is the harness\'s: stand-in controller, pods made and deleted, namespaces, the init')
    P('    container, processes, kwok\'s readiness; the sidecar\'s start -> registration in it is kbridge\'s;')
    P('    each answer includes a curl under ip netns exec; the pods\' lookup before the pod probe is left out)')
    P('')
    P('b) wrk -t1 -c50 (keep-alive) --latency from the api pod to the first injected pod\'s IP')
    lines += variant_table(f, KI_V, KI_LABEL, KI_COLUMNS)
    P('')
    rl, ratios = ratio_lines(runs, med, [
        ('injected sidecar / HAProxy  req/s', 'sidecar', 'haproxy', 'rps'),
        ('injected sidecar / HAProxy  p99', 'sidecar', 'haproxy', 'p99_us'),
        ('injected sidecar / HAProxy  CPU/req', 'sidecar', 'haproxy', 'cpu_us_per_req'),
        ('injected sidecar / app      req/s', 'sidecar', 'app', 'rps'),
        ('HAProxy / app               req/s', 'haproxy', 'app', 'rps'),
    ], 36)
    lines += rl
    P('')
    hand = hand_ratio(env)
    mine = ratios['sidecar/haproxy rps']['value']
    if hand is None:
        P('c) the hand-run sidecar (scripts/benchmarks/intercept): not measured (see notes)')
    else:
        P('c) the hand-run sidecar (scripts/benchmarks/intercept, same invocation, %s rounds x %s s):' % (
            hand['rounds'], hand['duration_s']))
        P('   sidecar %s req/s, HAProxy %s req/s: sidecar / HAProxy %s (per round %s)' % (
            '?' if hand['sidecar_rps'] is None else '%.0f' % hand['sidecar_rps'],
            '?' if hand['haproxy_rps'] is None else '%.0f' % hand['haproxy_rps'], fmt_ratio(hand['ratio']),
            '-' if not hand['per_round'] else '%.2f..%.2f' % tuple(hand['per_round'])))
        P('   injected sidecar / HAProxy %s vs hand-run %s: injected / hand-run ratio %s' % (
            fmt_ratio(mine), fmt_ratio(hand['ratio']), fmt_ratio(ratio(mine, hand['ratio']))))
        notes += ['hand-run: %s' % n for n in hand['notes']]
    P('(req/s: higher is better; the ratios, not the absolute figures, carry to another machine)')
    lines += note_lines(notes)
    print('\n'.join(lines))
    write_json(out, {
        'benchmark': 'kintercept', 'duration_s': dur, 'rounds': rounds, 'quick': quick,
        'cpus': os.cpu_count(), 'kernel': platform.release(), 'clk_tck': hz, 'variants': KI_DESC,
        'ttfr': {'rounds': tt, 'medians': {k: v[0] for k, v in tmed.items()},
                 'spread': {k: v[1] for k, v in tmed.items()}},
        'env': env, 'medians': med, 'spread': spread, 'ratios': ratios, 'hand_run': hand,
        'injected_vs_hand_ratio': ratio(mine, None if hand is None else hand['ratio']),
        'mem_idle': mem_idle, 'extra': extra, 'runs': runs, 'notes': notes, 'table': lines})


# ------------------------------------------------------------------ main
def _null(x):
    return 'null' if x is None else ('%g' % x if isinstance(x, float) else str(x))

# ---------------------------------------------------------------- team

def report_team(res, out_json):
    """scripts/bench team: the results file (env, wrk, rss, rss_routes, rtt,
    icpt, up lines per build) into OUT_JSON and a summary with the targets."""
    lines = [(l.rstrip("\n").split(" ", 2) + ["", ""])[:3] for l in open(res) if l.strip()]
    r = {"env": {}, "builds": {}}
    for kind, key, rest in lines:
        if kind == "env":
            r["env"][key] = rest
            continue
        b = key.split("-")[0]
        d = r["builds"].setdefault(b, {})
        if kind == "wrk":
            rps, p50, p99 = rest.split()
            d["wrk_" + key.split("-", 1)[1]] = {"rps": float(rps), "p50_us": float(p50), "p99_us": float(p99)}
        elif kind == "rss":
            a, c, n = map(int, rest.split())
            d["rss_kib"] = {"before": a, "after": c, "sessions": n, "per_session_kib": round((c - a) / n, 1)}
        elif kind == "rss_routes":
            d["rss_kib"]["with_routes"] = int(rest)
        elif kind == "rtt":
            d["rtt_" + key.split("-", 1)[1]] = json.loads(rest)
        elif kind == "icpt":
            d["intercepts_" + key.split("-", 1)[1]] = json.loads(rest)
        elif kind == "up":
            ms, j = rest.split(" ", 1)
            d["sessions_up"] = json.loads(j)
    json.dump(r, open(out_json, "w"), indent=1)
    e = r["env"]
    print("team: %s (%s CPUs), load %s -> %s" % (e.get("machine"), e.get("cpus"), e.get("load_before"), e.get("load_after")))
    for b, d in r["builds"].items():
        m, s, t = d["rss_kib"], d["wrk_small"], d["wrk_team"]
        print("[%s] %d sessions up in %.1f s; manager VmRSS %d -> %d kB: %.1f KiB per session (target < 64: %s); "
              "with 10,000 routes %d kB" % (b, d["sessions_up"]["sessions"], d["sessions_up"]["seconds"], m["before"],
                                             m["after"], m["per_session_kib"],
                                             "PASS" if m["per_session_kib"] < 64 else "MISS", m["with_routes"]))
        for k in ("idle", "routes"):
            x = d["rtt_" + k]
            print("[%s] round trips, all connected%s: PING p50 %.3f p99 %.3f ms; control p50 %.3f p99 %.3f ms "
                  "(target p99 < 5: %s)" % (b, "" if k == "idle" else " + 10,000 routes", x["ping_ms"]["p50"],
                                             x["ping_ms"]["p99"], x["control_ms"]["p50"], x["control_ms"]["p99"],
                                             "PASS" if x["control_ms"]["p99"] < 5 else "MISS"))
        it = d["intercepts_team"]
        print("[%s] intercepts made: %d ok, %d failed in %.1f s" % (b, it["ok"], it["failed"], it["seconds"]))
        ratio = t["rps"] / s["rps"]
        print("[%s] preview requests, all connected: 1 route %.0f req/s (p50 %.0f us, p99 %.0f us); 10,000 routes + 1,024 "
              "previews %.0f req/s (p50 %.0f us, p99 %.0f us): %.2fx (target >= 0.90: %s)" % (
                  b, s["rps"], s["p50_us"], s["p99_us"], t["rps"], t["p50_us"], t["p99_us"], ratio,
                  "PASS" if ratio >= 0.9 else "MISS"))
    return r


def main(argv):
    cmd, a = (argv[1], argv[2:]) if len(argv) > 1 else ('', [])
    if cmd == 'connect' and len(a) == 5:
        report_connect(a[0], a[1], int(a[2]), a[3] == '1', int(a[4]))
    elif cmd == 'intercept' and len(a) == 6:
        report_intercept(a[0], a[1], int(a[2]), int(a[3]), a[4] == '1', int(a[5]))
    elif cmd == 'preview' and len(a) == 6:
        report_preview(a[0], a[1], int(a[2]), int(a[3]), a[4] == '1', int(a[5]))
    elif cmd == 'portforward' and len(a) == 6:
        report_portforward(a[0], a[1], int(a[2]), int(a[3]), int(a[4]), a[5] == '1')
    elif cmd == 'k8sconnect' and len(a) == 7:
        report_k8sconnect(a[0], a[1], int(a[2]), a[3] == '1', int(a[4]), int(a[5]), int(a[6]))
    elif cmd == 'kintercept' and len(a) == 6:
        report_kintercept(a[0], a[1], int(a[2]), int(a[3]), a[4] == '1', int(a[5]))
    elif cmd == 'h2' and len(a) == 6:
        report_h2(a[0], a[1], int(a[2]), int(a[3]), a[4] == '1', int(a[5]))
    elif cmd == 'h2load' and len(a) >= 2:
        d = parse_h2load(read_text(a[0]))
        for field in a[1:]:
            print('null' if d.get(field) is None else
                  ('%.2f' % d[field] if isinstance(d[field], float) else d[field]))
    elif cmd == 'team' and len(a) == 2:
        report_team(a[0], a[1])
    elif cmd == 'wrk' and len(a) >= 2:
        d = parse_wrk(read_text(a[0]))
        for field in a[1:]:
            if field == 'problems':
                print(wrk_problems(d))
            elif field == 'p99':
                print(_null(None if d['p99_us'] is None else round(d['p99_us'])) + ('us' if d['p99_us'] is not None else ''))
            elif field == 'rps':
                print('null' if d['rps'] is None else '%.2f' % d['rps'])
            else:
                print(_null(d.get(field)))
    elif cmd == 'iperf3' and len(a) == 1:
        x = parse_iperf3(read_text(a[0]))
        print('null' if x is None else '%.4f' % x)
    elif cmd == 'iperf3-bytes' and len(a) == 1:
        x = parse_iperf3_bytes(read_text(a[0]))
        print('null' if x is None else '%d' % x)
    elif cmd == 'openssl-speed' and not a:
        x = parse_openssl_speed(sys.stdin.read())
        print('null' if x is None else '%.2f' % x)
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
