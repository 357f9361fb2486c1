"""Tests of scripts/lib/benchreport.py against recorded tool outputs
(samples/README says where each comes from). Run: python3 -m unittest
discover -s tests/bench (tests/e2e/benchreport.sh does)."""
import io
import json
import os
import sys
import tempfile
import unittest
from contextlib import redirect_stdout

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'scripts', 'lib'))
import benchreport as br  # noqa: E402


def sample(name):
    with open(os.path.join(HERE, 'samples', name)) as f:
        return f.read()


# A report_intercept results file's environment lines, and its run line:
# VARIANT ROUND SECS CPU APP PATH WALL_NS RSS ANON RC UP VCS H0 H1 SERVED OUT
IC_ENV = 'env binaries b1\nenv load_before 0.10 0 0\nenv load_after 0.20 0 0\nenv machine AMD EPYC|3.94\n'
IC_RUN = 'run %s %d 1 %d %d %d 1100000000 5000 1000 0 4 100 0,0 100,200 %d %s/%s\n'

class ToUs(unittest.TestCase):
    def test_units(self):
        self.assertEqual(br.to_us('780.00us'), 780)
        self.assertEqual(br.to_us('1.01ms'), 1010)
        self.assertEqual(br.to_us('2.00s'), 2e6)
        self.assertEqual(br.to_us('1.50m'), 90e6)
        self.assertEqual(br.to_us('1.00h'), 3600e6)
        self.assertIsNone(br.to_us('-nan%'))
        self.assertIsNone(br.to_us('12'))


class Wrk(unittest.TestCase):
    def test_latency_distribution(self):
        d = br.parse_wrk(sample('wrk-ok.out'))
        self.assertEqual(d['rps'], 1355.20)
        self.assertEqual(d['requests'], 1491)
        self.assertEqual(d['lat_avg_us'], 3250)
        self.assertEqual(d['lat_max_us'], 33660)
        self.assertEqual((d['p50_us'], d['p75_us'], d['p90_us'], d['p99_us']), (2640, 3400, 4520, 23020))
        self.assertIsNone(d['errors'])
        self.assertEqual(d['non2xx'], 0)
        self.assertIsNone(d['wrk_cpu_ticks'])
        self.assertEqual(br.wrk_problems(d), '')

    def test_non2xx(self):
        d = br.parse_wrk(sample('wrk-404.out'))
        self.assertEqual(d['non2xx'], 1714)
        self.assertEqual(d['requests'], 1714)
        self.assertEqual(d['p99_us'], 5790)
        self.assertEqual(br.wrk_problems(d), 'Non-2xx or 3xx responses: 1714')

    def test_socket_errors(self):
        d = br.parse_wrk(sample('wrk-readerr.out'))
        self.assertEqual(d['errors'], 'Socket errors: connect 0, read 4176, write 0, timeout 0')
        self.assertEqual(d['socket_errors'], {'connect': 0, 'read': 4176, 'write': 0, 'timeout': 0})
        self.assertEqual(d['p50_us'], 780)
        self.assertEqual(d['rps'], 3800.32)

    def test_zero_responses_have_no_latency(self):
        # wrk prints 0.00us for every latency when nothing answered: no figure
        d = br.parse_wrk(sample('wrk-zero.out'))
        self.assertEqual(d['requests'], 0)
        self.assertEqual(d['rps'], 0.0)
        for k in ('lat_avg_us', 'lat_max_us', 'p50_us', 'p75_us', 'p90_us', 'p99_us'):
            self.assertIsNone(d[k], k)

    def test_refused(self):
        d = br.parse_wrk(sample('wrk-refused.out'))
        self.assertIsNone(d['rps'])
        self.assertIsNone(d['requests'])
        self.assertIsNone(d['p99_us'])

    def test_no_latency_flag_and_wrkstat(self):
        # connect's runs: no --latency; the kbbench-wrkstat line is the sh's
        # /proc stat after wrk was reaped: cutime 0 + cstime 28
        d = br.parse_wrk(sample('wrk-nolat.out'))
        self.assertEqual(d['rps'], 3527.68)
        self.assertEqual(d['requests'], 3880)
        self.assertEqual(d['lat_avg_us'], 715.91)
        self.assertEqual(d['lat_max_us'], 11190)
        self.assertIsNone(d['p50_us'])
        self.assertEqual(d['socket_errors']['read'], 3880)
        self.assertEqual(d['wrk_cpu_ticks'], 28)

    def test_seconds_minutes_both_error_lines(self):
        d = br.parse_wrk(sample('wrk-slow.out'))
        self.assertEqual(d['lat_avg_us'], 1.2e6)
        self.assertEqual(d['lat_max_us'], 1.02 * 60e6)
        self.assertEqual((d['p50_us'], d['p75_us'], d['p90_us']), (1.1e6, 1.5e6, 1.8e6))
        self.assertAlmostEqual(d['p99_us'], 61.2e6)
        self.assertEqual(d['socket_errors']['timeout'], 12)
        self.assertEqual(d['non2xx'], 3)
        self.assertEqual(d['wrk_cpu_ticks'], 12)
        self.assertEqual(br.wrk_problems(d),
                         'Socket errors: connect 0, read 0, write 0, timeout 12; Non-2xx or 3xx responses: 3')

    def test_latency_header_is_not_the_latency_line(self):
        # "Latency Distribution" must not be read as the Thread Stats line,
        # even when it comes first (a truncated output)
        d = br.parse_wrk('  Latency Distribution\n     50%    2.64ms\n  10 requests in 1.00s, 1KB read\n')
        self.assertIsNone(d['lat_avg_us'])
        self.assertEqual(d['p50_us'], 2640)


class H2load(unittest.TestCase):
    def test_ok(self):
        d = br.parse_h2load(sample('h2load-ok.out'))
        self.assertEqual(d['rps'], 12609.0)
        self.assertEqual((d['requests'], d['succeeded'], d['failed'], d['errored'], d['timeout']),
                         (25218, 25218, 0, 0, 0))
        self.assertEqual(d['non2xx'], 0)
        self.assertEqual(d['h2load_cpu_ticks'], 14)

    def test_refused(self):
        d = br.parse_h2load(sample('h2load-refused.out'))
        self.assertEqual(d['rps'], 0.0)
        self.assertEqual((d['succeeded'], d['failed'], d['errored']), (0, 10, 10))
        self.assertIsNone(d['h2load_cpu_ticks'])


class Iperf3(unittest.TestCase):
    def test_ok(self):
        self.assertAlmostEqual(br.parse_iperf3(sample('iperf-ok.json')), 0.100644374857, places=9)

    def test_bytes(self):
        j = json.loads(sample('iperf-ok.json'))
        self.assertEqual(br.parse_iperf3_bytes(sample('iperf-ok.json')), j['end']['sum_received']['bytes'])
        self.assertIsNone(br.parse_iperf3_bytes(sample('iperf-refused.json')))
        self.assertIsNone(br.parse_iperf3_bytes(''))

    def test_roles(self):
        # 2 GiB at 100 ticks/s: 300 ticks = 1.5 CPU-s per GiB; 4096 calls / 2048 MiB = 2 per MiB
        d = br.parse_roles('%d 100 a=1000,10 b=5,0 a=1300,4106 b=105,2048' % (2 * 2**30))
        self.assertEqual(d, {'a': {'cpu_s_per_gib': 1.5, 'syscalls_per_mib': 2.0},
                             'b': {'cpu_s_per_gib': 0.5, 'syscalls_per_mib': 1.0}})
        self.assertIsNone(br.parse_roles('null 100 a=1,1 a=2,2'))
        self.assertIsNone(br.parse_roles('0 100'))
        self.assertEqual(br.parse_roles('1024 100 a=1,1'), {})  # no "after": nothing
        # connect's relays: 0 calls before, perf's count after, "-" when perf
        # counted nothing: the CPU figure stays, the calls are unknown
        d = br.parse_roles('%d 100 r=10,0 s=0,0 r=110,2048 s=50,-' % 2**30)
        self.assertEqual(d, {'r': {'cpu_s_per_gib': 1.0, 'syscalls_per_mib': 2.0},
                             's': {'cpu_s_per_gib': 0.5, 'syscalls_per_mib': None}})
        self.assertEqual(br.parse_roles('1024 100 a=1,x a=2,y'), {})  # garbage calls: skipped

    def test_refused_and_garbage(self):
        self.assertIsNone(br.parse_iperf3(sample('iperf-refused.json')))
        self.assertIsNone(br.parse_iperf3('iperf3: error - unable to connect'))
        self.assertIsNone(br.parse_iperf3(''))


class OpensslSpeed(unittest.TestCase):
    def test_gcm(self):
        self.assertAlmostEqual(br.parse_openssl_speed(sample('openssl-speed.out')), 3.63528868, places=6)
        self.assertIsNone(br.parse_openssl_speed('Error setting cipher'))


class Figures(unittest.TestCase):
    def test_summarize_and_ratio(self):
        m, s = br.summarize([10.0, 30.0, 20.0])
        self.assertEqual(m, 20.0)
        self.assertEqual(s, {'min': 10.0, 'max': 30.0, 'n': 3, 'half_range_pct': 50.0})
        self.assertEqual(br.summarize([4, 1, 3, 2])[0], 2.5)
        self.assertIsNone(br.ratio(1, 0))
        self.assertIsNone(br.ratio(None, 2))
        self.assertEqual(br.ratio(3, 2), 1.5)
        runs = {'a': [{'round': 1, 'rps': 10}, {'round': 2, 'rps': 30}],
                'b': [{'round': 1, 'rps': 5}, {'round': 2, 'rps': 10}]}
        self.assertEqual(br.per_round(runs, 'a', 'b', 'rps'), (2.0, 3.0))

    def test_busy(self):
        n = os.cpu_count() or 1
        self.assertTrue(br.busy_machine({'load_before': '%d 0 0' % n, 'load_after': '0.0 0 0'}))
        self.assertFalse(br.busy_machine({'load_before': '0.0 1 1', 'load_after': '0.0 1 1'}))
        self.assertFalse(br.busy_machine({}))

    def test_connect_figures(self):
        res = [('env', 'binaries', 'x y'), ('direct', 'tput1', '2.5'), ('kbridge', 'tput1', '1.25'),
               ('kbridge', 'connect_ms', '120.0'), ('kbridge', 'connect_ms', 'null'),
               ('kbridge', 'connect_ms', '100.0'), ('kbridge', 'connect_ms', '300.0'),
               ('kbridge', 'kbd_rss_base', '4000'), ('kbridge', 'kbd_rss_held', '6000'),
               ('kbridge', 'hold_ok', '2000'), ('kbridge', 'dns', '{"p50_ms": 0.1, "ok": 195, "fail": 5}'),
               ('kbridge', 'note', 'something')]
        r, raw, env, notes = br.connect_figures(res)
        self.assertEqual(r['kbridge']['connect_ms'], 120.0)
        self.assertEqual(raw['kbridge']['connect_ms'], [120.0, None, 100.0, 300.0])
        self.assertEqual(r['kbridge']['kbd_kib_per_conn'], 1.0)
        self.assertIsNone(r['kbridge']['mgr_kib_per_conn'])
        self.assertEqual(r['kbridge']['dns_p50_ms'], 0.1)
        self.assertEqual(env['binaries'], 'x y')
        self.assertEqual(notes, ['kbridge: 5 of 200 DNS lookups failed', 'kbridge: something'])


class Timing(unittest.TestCase):
    LINE = ('kbridge: timing: prepare_ms=312.4 api_ms=180.2 api_requests=9 csr_wait_ms=100.3 '
            'daemon_ms=21.0 connect_ms=45.5 total_ms=381.9\n')

    def test_parse(self):
        d = br.parse_timing('Connected to 127.0.0.1:4 as alice\n' + self.LINE)
        self.assertEqual(d, {'prepare_ms': 312.4, 'api_ms': 180.2, 'api_requests': 9, 'csr_wait_ms': 100.3,
                             'daemon_ms': 21.0, 'connect_ms': 45.5, 'total_ms': 381.9})
        self.assertEqual(br.parse_timing('kbridge: connect: alice may not get pods\n'), {})
        # the last line wins; a field that is not a number is left out
        self.assertEqual(br.parse_timing(self.LINE + 'kbridge: timing: prepare_ms=x api_ms=2\n'), {'api_ms': 2.0})

    def test_run(self):
        with tempfile.NamedTemporaryFile('w', suffix='.err') as f:
            f.write(self.LINE)
            f.flush()
            # ROUND RC CMD_US REQ_US TOTAL_US TRIES ERRFILE
            d = br.kc_run(['3', '0', '400000', '25000', '425000', '2', f.name], br.read_text(f.name))
        self.assertEqual(d['cmd_ms'], 400.0)
        self.assertEqual(d['first_req_ms'], 25.0)
        self.assertEqual(d['daemon_connect_ms'], 45.5)
        self.assertEqual(d['prepare_own_ms'], round(312.4 - 180.2 - 100.3, 1))
        self.assertEqual(d['cluster_wait_ms'], 280.5)
        self.assertEqual(d['cluster_wait_pct'], round(100 * 280.5 / 425, 1))
        self.assertEqual(d['outside_cli_ms'], round(400 - 381.9, 1))
        d = br.kc_run(['3', '0', '400000', '25000', '425000', '2', f.name, '12500', 'null'], self.LINE)
        self.assertEqual(d['second_req_ms'], 12.5)
        self.assertIsNone(d['netns_ms'])
        bad = br.kc_run(['1', '1', '9', '0', '9', '0', '/nonexistent'], '')
        self.assertEqual(bad, {'round': 1, 'rc': 1, 'ok': False})
        # no timing line (an older kbridge): the wall figures only
        d = br.kc_run(['1', '0', '1000', '2000', '3000', '1'], '')
        self.assertIsNone(d['prepare_ms'])
        self.assertNotIn('cluster_wait_ms', d)
        self.assertEqual(d['total_ms'], 3.0)


class Reports(unittest.TestCase):
    """The three reports end to end, from results files like bench.bash's."""

    def run_report(self, fn, results, *args):
        with tempfile.TemporaryDirectory() as d:
            res, out = os.path.join(d, 'results'), os.path.join(d, 'out', 'bench.json')
            with open(res, 'w') as f:
                f.write(results)
            buf = io.StringIO()
            with redirect_stdout(buf):
                fn(res, out, *args)
            with open(out) as f:
                return buf.getvalue(), json.load(f)

    def intercept_report(self, runs, extra):
        """report_intercept over IC_ENV, one run line per (VARIANT, CPU, APP,
        PATH, SAMPLE) of round 1 with 1491 requests served, then extra lines;
        one round of 1 s, --quick, CLK_TCK 100."""
        s = os.path.join(HERE, 'samples')
        return self.run_report(br.report_intercept, IC_ENV + ''.join(
            IC_RUN % (v, 1, cpu, app, path, 1491, s, out) for v, cpu, app, path, out in runs) + extra,
            1, 1, True, 100)

    def test_intercept(self):
        s = os.path.join(HERE, 'samples')
        env = IC_ENV
        # VARIANT ROUND SECS CPU APP PATH WALL_NS RSS ANON RC UP VCS H0 H1 SERVED OUT
        run = 'run %s %d 1 %d 10 0 1100000000 5000 1000 0 4 100 0,0 100,200 %d %s/%s\n'
        txt, j = self.run_report(br.report_intercept, env +
                                 run % ('app', 1, 10, 1491, s, 'wrk-ok.out') +
                                 run % ('haproxy', 1, 20, 1491, s, 'wrk-ok.out') +
                                 run % ('sidecar', 1, 15, 1714, s, 'wrk-404.out') +
                                 run % ('sidecar', 2, 15, 4178, s, 'wrk-readerr.out'), 1, 2, True, 100)
        self.assertEqual(j['medians']['app']['rps'], 1355.2)
        self.assertEqual(j['medians']['sidecar']['rps'], round((1558.52 + 3800.32) / 2, 2))
        self.assertEqual(j['medians']['sidecar']['p99_us'], round((5790 + 4570) / 2, 2))
        # 10 ticks of 1/100 s over 1491 requests
        self.assertEqual(j['runs']['app'][0]['cpu_us_per_req'], round(0.1 * 1e6 / 1491, 2))
        self.assertEqual(j['runs']['app'][0]['lat_overlap'], round(1491 * 3250 / 1e6 / (50 * 1.1), 3))
        self.assertIn('sidecar round 1: 1714 non-2xx responses', j['notes'])
        self.assertIn('sidecar round 2: wrk Socket errors: connect 0, read 4176, write 0, timeout 0', j['notes'])
        self.assertIn('machine: AMD EPYC', txt)
        self.assertIn('3.94 GB/s', txt)
        self.assertRegex(txt, r'a app alone: nginx :80 +1355 ')
        self.assertEqual(j['ratios']['sidecar/haproxy rps']['value'], round(((1558.52 + 3800.32) / 2) / 1355.2, 4))

    def test_intercept_path(self):
        """e and e1: the path's CPU against bob's local nginx (the APP field), -c1 ratios."""
        txt, j = self.intercept_report([('app1', 10, 10, 0, 'wrk-ok.out'), ('icpt1', 5, 4, 12, 'wrk-ok.out'),
                                        ('icpt', 5, 4, 12, 'wrk-ok.out')],
                                       # split VARIANT-ROUND: ticks, then sleeps, of sidecar, manager, kbridged
                                       'split icpt-1 6 2 4 3000 1491 0\n'
                                       'split icpt1-1 6 2 4 3000\n')
        self.assertEqual(j['runs']['icpt'][0]['path_per_app_cpu'], 3.0)
        # 6 ticks of 1/100 s over 1491 requests; 3000 sleeps
        self.assertEqual(j['medians']['icpt']['sidecar_cpu_us_per_req'], round(0.06 * 1e6 / 1491, 2))
        self.assertEqual(j['medians']['icpt']['manager_cpu_us_per_req'], round(0.02 * 1e6 / 1491, 2))
        self.assertEqual(j['runs']['icpt'][0]['sidecar_sleeps_per_req'], round(3000 / 1491, 3))
        self.assertEqual(j['medians']['icpt']['kbridged_sleeps_per_req'], 0)
        self.assertRegex(txt, r'e\) by process, CPU us / sleeps per request: sidecar 40\.2 / 2\.01, '
                         r'manager 13\.4 / 1\.00, kbridged 26\.8 / 0\.00')
        # a short line says nothing
        self.assertNotIn('sidecar_cpu_us_per_req', j['medians']['icpt1'])
        self.assertNotIn('e1) by process', txt)
        # a line without the system ticks (the bench's before them) says nothing of the kernel
        self.assertNotIn('path_sys_us_per_req', j['medians']['icpt'])
        self.assertIsNone(j['kernel_bound']['icpt'])
        self.assertNotIn('system (kernel) time', txt)
        self.assertEqual(j['runs']['icpt1'][0]['path_per_app_cpu'], 3.0)
        self.assertIsNone(j['runs']['app1'][0]['path_per_app_cpu'])
        t = {x['target']: x for x in j['targets']}
        self.assertIs(t['intercept path CPU <= 2.5x local app']['pass'], False)
        self.assertIs(t['intercept -c1 req/s >= 0.5x app alone']['pass'], True)  # same wrk output: 1.0x
        self.assertIn('e1 intercept (bob), -c1', txt)
        self.assertNotIn('icpt1 round 1: wrk\'s latencies', ' '.join(j['notes']))

    def test_intercept_kernel_bound(self):
        """e and f: the system part of the path's CPU (the split line's last
        four fields: each hop's system ticks, then the app's) against bob's
        nginx's whole CPU, and the user time left at 2.5x."""
        txt, j = self.intercept_report([('icpt', 5, 4, 12, 'wrk-ok.out'), ('relay', 6, 4, 6, 'wrk-ok.out'),
                                        ('icpt1', 5, 4, 12, 'wrk-ok.out')],
                                       # ticks, sleeps, system ticks of sidecar, manager, kbridged; the app's
                                       'split icpt-1 6 2 4 3000 1491 0 5 1 3 3\n'
                                       'split relay-1 2 1 3 30 40 50 2 1 3 2\n'
                                       'split icpt1-1 6 2 4 3000 1491 0 5 1\n')

        def us(t):
            return round(t / 100 * 1e6 / 1491, 2)
        m = j['medians']['icpt']
        self.assertEqual(m['sidecar_sys_us_per_req'], us(5))
        self.assertEqual(m['kbridged_sys_us_per_req'], us(3))
        self.assertEqual(m['path_sys_us_per_req'], us(9))
        self.assertEqual(m['path_user_us_per_req'], us(3))
        self.assertEqual(m['app_sys_us_per_req'], us(3))
        k = j['kernel_bound']['icpt']
        self.assertEqual(k['path_sys_per_app_cpu'], round(us(9) / us(4), 3))
        self.assertAlmostEqual(k['user_budget_us_at_2_5x'], 2.5 * us(4) - us(9), places=2)
        self.assertAlmostEqual(k['user_budget_share'], (2.5 * us(4) - us(9)) / us(3), places=2)
        self.assertRegex(txt, r'e\) system \(kernel\) time per request: 60\.4 us \(sidecar 33\.5, manager 6\.7, '
                         r'kbridged 20\.1\), 2\.25 x bob\'s nginx\'s whole CPU \(26\.8 us, 20\.1 us of it system\); '
                         r'user time 20\.1 us')
        self.assertIn('the three would have 6.7 us of user time per request: 33 % of the 20.1 us they spend', txt)
        # f: all of the relays' CPU is system time here
        self.assertEqual(j['kernel_bound']['relay']['path_user_us_per_req'], 0)
        self.assertIsNone(j['kernel_bound']['relay']['user_budget_share'])
        self.assertRegex(txt, r'f\) system \(kernel\) time per request: 40\.2 us \(web 13\.4, mgr 6\.7, bob 20\.1\)')
        self.assertIn('(they spend none)', txt)
        # a line cut off in the system ticks says nothing at all
        self.assertNotIn('path_sys_us_per_req', j['medians']['icpt1'])
        self.assertNotIn('sidecar_sleeps_per_req', j['medians']['icpt1'])

    def test_intercept_relay_floor(self):
        """f and f1, the relay chain: its CPU by relay, its -c1 ratio, and
        intercept / relay chain, whole and hop by hop, in the text and the JSON."""
        txt, j = self.intercept_report([('app1', 10, 10, 0, 'wrk-ok.out'), ('icpt', 12, 4, 12, 'wrk-ok.out'),
                                        ('relay', 6, 4, 6, 'wrk-ok.out'), ('icpt1', 12, 4, 12, 'wrk-ok.out'),
                                        ('relay1', 6, 4, 6, 'wrk-404.out')],
                                       'split icpt-1 6 2 4 3000 1491 0\n'
                                       # ticks, then sleeps, of the web, mgr and bob relays
                                       'split relay-1 2 1 3 30 40 50\n'
                                       'split relay1-1 2 1\n'
                                       # segs VARIANT-ROUND: TCP segments sent in web, mgr, bob; node's forwards
                                       'segs icpt-1 1749 462 3414 3609\n'
                                       'segs relay-1 2982 2982 4473 5964\n'
                                       'segs relay1-1 5 5\n')
        self.assertEqual(j['runs']['icpt'][0]['segs_web_per_req'], round(1749 / 1491, 3))
        self.assertEqual(j['runs']['relay'][0]['fwd_node_per_req'], 4.0)
        self.assertRegex(txt, r'e\) TCP segments sent per request: web pod 1\.17, mgr pod 0\.31, bob 2\.29 '
                         r'\(his nginx\'s answers among them\); IP datagrams the node forwarded 2\.42')
        self.assertRegex(txt, r'f\) TCP segments sent per request: web pod 2\.00, mgr pod 2\.00, bob 3\.00 .*'
                         r'forwarded 4\.00')
        # a short line says nothing
        self.assertNotIn('segs_web_per_req', j['medians']['relay1'])
        self.assertNotIn('f1) TCP segments', txt)
        self.assertNotIn('e1) TCP segments', txt)
        m = j['medians']['relay']
        self.assertEqual(m['path_per_app_cpu'], 1.5)
        self.assertEqual(m['relay_web_cpu_us_per_req'], round(0.02 * 1e6 / 1491, 2))
        self.assertEqual(m['relay_bob_cpu_us_per_req'], round(0.03 * 1e6 / 1491, 2))
        self.assertEqual(j['runs']['relay'][0]['relay_mgr_sleeps_per_req'], round(40 / 1491, 3))
        self.assertNotIn('sidecar_cpu_us_per_req', m)
        # a short line says nothing
        self.assertNotIn('relay_web_cpu_us_per_req', j['medians']['relay1'])
        self.assertNotIn('f1) by relay', txt)
        self.assertRegex(txt, r'f\) by relay, CPU us / sleeps per request: web 13\.4 / 0\.02, '
                         r'mgr 6\.7 / 0\.03, bob 20\.1 / 0\.03')
        self.assertRegex(txt, r'f relay chain \(floor\) -> bob +1355 ')
        fl = j['floor']
        self.assertEqual(fl['path_cpu_us_per_req'], round(0.06 * 1e6 / 1491, 2))
        self.assertEqual(fl['intercept_per_relay']['path_cpu'], 2.0)
        # per-request figures are rounded to 0.01 us first
        for k, want in (('sidecar/relay_web', 3.0), ('manager/relay_mgr', 2.0), ('kbridged/relay_bob', 4 / 3)):
            self.assertAlmostEqual(fl['intercept_per_relay']['by_hop_cpu'][k], want, places=2)
        self.assertEqual(fl['c1_by_relay_cpu_us_per_req'], {'relay_web': None, 'relay_mgr': None, 'relay_bob': None})
        # f1 ran the 404 sample: 1558.52 req/s against a1's 1355.2
        self.assertEqual(fl['c1_rps_per_app'], round(1558.52 / 1355.2, 4))
        self.assertEqual(fl['intercept_per_relay']['c1_rps'], round(1355.2 / 1558.52, 4))
        self.assertEqual(j['ratios']['icpt/relay path_cpu_us_per_req']['value'], 2.0)
        self.assertAlmostEqual(j['ratios']['icpt/relay sidecar_cpu_us_per_req/relay_web_cpu_us_per_req']['value'], 3.0,
                               places=2)
        self.assertIn('intercept / relay chain: CPU per request 2.00x (-c1 2.30x), -c1 req/s 0.87x', txt)
        self.assertIn('e/f CPU by hop: sidecar / web 3.00x, manager / mgr 2.00x, kbridged / bob 1.33x', txt)
        self.assertRegex(txt, r'sidecar / web relay +CPU/request +3\.00x +3\.00\.\.3\.00')
        t = {x['target']: x for x in j['targets']}
        self.assertIs(t['floor: relay chain CPU <= 2.5x local app']['pass'], True)
        self.assertEqual(t['floor: relay -c1 req/s >= 0.5x app alone']['value'], 1558.52 / 1355.2)
        self.assertIn('relay1 round 1: 1714 non-2xx responses', j['notes'])
        self.assertEqual(j['runs']['relay'][0]['app_cpu_us_per_req'], round(0.04 * 1e6 / 1491, 2))

    def test_h2(self):
        s = os.path.join(HERE, 'samples')
        env = IC_ENV
        # VARIANT ROUND SECS CPU WALL_NS RSS ANON RC H0 H1 OUT
        run = 'run %s %d 2 %d 2000000000 9000 3000 %d 0,0 100,200 %s/%s\n'
        txt, j = self.run_report(br.report_h2, env +
                                 run % ('app', 1, 30, 0, s, 'h2load-ok.out') +
                                 run % ('sidecar', 1, 40, 0, s, 'h2load-ok.out') +
                                 run % ('haproxy', 1, 50, 0, s, 'h2load-ok.out') +
                                 run % ('haproxy', 2, 50, 1, s, 'h2load-refused.out'), 2, 2, True, 100)
        self.assertEqual(j['medians']['sidecar']['rps'], 12609.0)
        self.assertEqual(j['medians']['haproxy']['rps'], 12609.0 / 2)
        # 40 ticks of 1/100 s over 25218 requests
        self.assertEqual(j['runs']['sidecar'][0]['cpu_us_per_req'], round(0.4 * 1e6 / 25218, 2))
        self.assertEqual(j['runs']['sidecar'][0]['h2load_cpu_us_per_req'], round(0.14 * 1e6 / 25218, 2))
        self.assertIsNone(j['runs']['haproxy'][1]['cpu_us_per_req'])
        self.assertTrue(any(n.startswith('haproxy round 2: h2load failed (rc 1)') for n in j['notes']))
        self.assertEqual(j['ratios']['sidecar/haproxy rps']['value'], 2.0)
        self.assertEqual([t['pass'] for t in j['targets']], [True, True])
        self.assertIn('machine: AMD EPYC', txt)
        self.assertRegex(txt, r'b kbridge sidecar :8082 +12609 ')

    def test_kintercept(self):
        s = os.path.join(HERE, 'samples')
        with tempfile.TemporaryDirectory() as d:
            hand = os.path.join(d, 'bench-intercept.json')
            with open(hand, 'w') as f:
                json.dump({'rounds': 2, 'duration_s': 2, 'ratios': {'sidecar/haproxy rps': {
                    'value': 1.25, 'per_round': [1.2, 1.3]}}, 'medians': {
                    'sidecar': {'rps': 25000}, 'haproxy': {'rps': 20000}}, 'notes': ['x: y']}, f)
            env = ('env binaries b1\nenv load_before 0.10 0 0\nenv load_after 0.20 0 0\n'
                   'env machine AMD EPYC|3.94\nenv hand_json %s\n' % hand)
            run = 'run %s %d 1 %d 10 0 1100000000 5000 1000 0 0 100 0,0 100,200 %d %s/%s\n'
            # ROUND RC PATCH READY DONE POD FIRST REG TRIES LOOKUP (us)
            ttfr = ('ttfr 1 0 200000 4200000 4500000 4550000 4600000 300000 3 100000\n'
                    'ttfr 2 0 100000 3100000 3300000 3350000 3400000 null 2 100000\n'
                    'ttfr 3 0 300000 5300000 5700000 5800000 5900000 500000 4 100000\n'
                    'ttfr 4 1 0 0 90000000 90000000 90000000 null 0 0\n'
                    'ttfr 5 0 1\n'
                    'ttfr note round 4 failed (rc 1): timed out\n')
            txt, j = self.run_report(br.report_kintercept, env + ttfr +
                                     run % ('app', 1, 10, 1491, s, 'wrk-ok.out') +
                                     run % ('haproxy', 1, 20, 1491, s, 'wrk-ok.out') +
                                     run % ('sidecar', 1, 15, 1491, s, 'wrk-ok.out'), 1, 1, True, 100)
        t = j['ttfr']['medians']
        self.assertEqual(len(j['ttfr']['rounds']), 4)
        self.assertIn('ttfr: a malformed line: 5 0 1', j['notes'])
        self.assertEqual(t['pod_ms'], 50)
        self.assertEqual(t['svc_ms'], 50)
        self.assertEqual(t['total_ms'], 4600)
        self.assertEqual(t['cli_patch_ms'], 200)
        self.assertEqual(t['rollout_ms'], 4000)
        self.assertEqual(t['reg_ms'], 400)
        # kbridge: patch + reg + (done - ready) + (first - done), per round
        self.assertEqual([r.get('kbridge_ms') for r in j['ttfr']['rounds']], [850, 350, 1300, None])
        self.assertEqual(t['kbridge_ms'], 850)
        self.assertEqual(t['harness_ms'], 3750)
        self.assertIn('ttfr: round 4 failed (rc 1): timed out', j['notes'])
        self.assertIn("ttfr round 2: no sidecar registration time; kbridge's part leaves it out", j['notes'])
        self.assertIn('hand-run: x: y', j['notes'])
        self.assertEqual(j['ratios']['sidecar/haproxy rps']['value'], 1.0)
        self.assertEqual(j['hand_run']['ratio'], 1.25)
        self.assertEqual(j['injected_vs_hand_ratio'], 0.8)
        self.assertIn('3 of 4 rounds succeeded', txt)
        self.assertRegex(txt, r'injected sidecar / HAProxy 1.00x vs hand-run 1.25x: injected / hand-run ratio 0.80x')
        self.assertIn('machine: AMD EPYC', txt)

    def test_preview(self):
        s = os.path.join(HERE, 'samples')
        # VARIANT ROUND SECS HOP_CPU DOWN_CPU WALL_NS RSS ANON RC H0 H1 OUT
        run = 'run %s 1 1 %d 30 1100000000 %s %s %d 0,0 100,200 %s/%s\n'
        txt, j = self.run_report(br.report_preview, 'env binaries b\n' +
                                 run % ('straight', 0, 'null', 'null', 0, s, 'wrk-ok.out') +
                                 run % ('preview', 20, '9000', '3000', 0, s, 'wrk-nolat.out') +
                                 run % ('haproxy', 40, '15000', '4000', 1, s, 'wrk-refused.out'), 1, 1, False, 100)
        self.assertIsNone(j['runs']['straight'][0]['hop_cpu_us_per_req'])
        self.assertEqual(j['runs']['preview'][0]['wrk_cpu_us_per_req'], round(0.28 * 1e6 / 3880, 2))
        self.assertEqual(j['medians']['preview']['vmrss_kib'], 9000)
        self.assertNotIn('rps', j['medians']['haproxy'])
        self.assertTrue(any(n.startswith('haproxy round 1: wrk failed (rc 1): unable to connect') for n in j['notes']),
                        j['notes'])
        self.assertIn('machine: ?', txt)

    def test_connect(self):
        gib = 2**30
        res = ('env binaries b\nenv machine Some CPU|2.00\ndirect tput1 2.0000\nstunnel tput1 0.5000\n'
               'kbridge tput1 1.0000\nkbridge http_ka 500\ndirect http_ka 1000\nkbridge cpu_tput1 150\n'
               'direct http_new 1000\nrelay http_new 750\n'
               'kbridge roles_tput1 %d 100 kbridged=0,0 manager=0,0 kbridged=100,1024 manager=50,0\n'
               'stunnel roles_tput1 %d 100 stunnel-client=0,0 stunnel-server=0,0 '
               'stunnel-client=200,0 stunnel-server=100,0\n' % (gib, gib))
        txt, j = self.run_report(br.report_connect, res, 2, True, 2000)
        self.assertEqual(j['ratios']['tput1']['kbridge/stunnel'], 2.0)
        self.assertEqual(j['ratios']['http_ka']['kbridge/direct'], 0.5)
        self.assertEqual(j['targets'][0]['pass'], True)
        self.assertEqual(j['targets'][2]['pass'], False)  # keep-alive 0.5x < 0.7x direct
        self.assertEqual(j['results']['kbridge']['roles_tput1']['kbridged'],
                         {'cpu_s_per_gib': 1.0, 'syscalls_per_mib': 1.0})
        self.assertRegex(txt, r'kbridged +1\.00 +n/a +1\.0 +n/a')
        self.assertRegex(txt, r'kbridge \(both\) +1\.50 +n/a')
        self.assertRegex(txt, r'stunnel \(both\) +3\.00 +n/a')
        self.assertRegex(txt, r'kbridge/stunnel +0\.50x +-')
        self.assertIn("machine's 2.00 GB/s: 0.54 CPU-s", txt)
        self.assertRegex(txt, r'throughput, 1 stream +Gbit/s +2\.000 +0\.500 +n/a +1\.000 +n/a \|')
        self.assertIn('150%', txt)
        # the relay's new connections at 0.75x direct meet the target; its
        # other figures missing: ratios and targets unknown, not failed
        self.assertIsNone(j['ratios']['tput1']['kbridge/relay'])
        self.assertEqual(j['ratios']['http_new']['relay/direct'], 0.75)
        self.assertEqual([t['pass'] for t in j['floor_targets']], [None, None, None, True])
        self.assertRegex(txt, r'relay chain new connections/s vs direct \(0\.75x\) +0\.75x +PASS\n')

    def test_connect_floor(self):
        # a recorded results file (samples/README) and the report made from it
        txt, j = self.run_report(br.report_connect, sample('connect-results'), 5, False, 250)
        rt = j['ratios']
        self.assertEqual(j['results']['relay']['tput1'], 3.1075)
        self.assertEqual(j['results']['relay']['http_new'], 3438.5)
        self.assertEqual(rt['http_new']['relay/direct'], round(3438.5 / 6852.8, 4))
        self.assertEqual(rt['http_ka']['kbridge/relay'], round(14989.34 / 9479.51, 4))
        self.assertEqual(rt['tput8']['relay/stunnel'], round(2.7372 / 3.8908, 4))
        self.assertEqual(j['results']['relay']['roles_tput1']['relay-client']['syscalls_per_mib'], 129.7)
        self.assertEqual(j['results']['relay']['cpu_http_new'], 73)
        F = {t['target']: t for t in j['floor_targets']}
        self.assertEqual(F['relay chain new connections/s vs direct (0.75x)']['pass'], False)
        self.assertEqual(F['relay chain throughput 8 streams vs stunnel (1.3x)']['pass'], False)
        self.assertEqual(F['relay chain keep-alive req/s vs direct (0.7x)']['measured'], '0.45x')
        # kbridge's own targets are as before, and its column as before
        self.assertEqual([t['target'] for t in j['targets']][:4], [
            'kbridge throughput 1 stream >= 1.3x stunnel', 'kbridge throughput 8 streams >= 1.3x stunnel',
            'keep-alive req/s >= 0.7x direct', 'new connections/s >= 0.75x direct'])
        self.assertRegex(txt, r'HTTP new connection each +req/s +6853 +706 +1218 +4434 +3438 \| +0\.10x '
                              r'+0\.18x +0\.65x +6\.28x +3\.64x +0\.50x +1\.29x\n')
        self.assertRegex(txt, r'relay-client +0\.70 +0\.81 +129\.7 +137\.6\n')
        self.assertRegex(txt, r'kbridge/relay +1\.24x +1\.16x\n')
        self.assertRegex(txt, r'HTTP new connection each +129% +131% +62% +73%\n')
        self.assertIn('kbridge / relay: 1 stream 1.23x; 8 streams 1.12x; keep-alive 1.58x; '
                      'new connections 1.29x', txt)
        self.assertEqual(j['notes'], ['sshuttle: 1 of 200 DNS lookups failed'])

    def test_portforward(self):
        # VARIANT TEST ROUND GBIT_S TICKS BYTES
        res = ('env binaries b\nenv clk_tck 100\n'
               'run kbridge down 1 1.0000 20 1000000000\nrun kubectl down 1 0.5000 50 1000000000\n'
               'run kbridge echo 1 0.2000 30 500000000\nrun kubectl echo 1 null 0 500000000\n'
               'kubectl note echo round 1 failed: x\n')
        txt, j = self.run_report(br.report_portforward, res, 128, 64, 1, False)
        self.assertEqual(j['medians']['kbridge-down']['cpu_s_per_gb'], 0.2)
        self.assertEqual(j['medians']['kbridge-echo']['cpu_s_per_gb'], 0.3)  # both ways
        self.assertEqual(j['ratios']['kbridge-down/kubectl-down gbit_s']['value'], 2.0)
        self.assertIsNone(j['ratios']['kbridge-echo/kubectl-echo gbit_s']['value'])
        self.assertRegex(txt, r'kbridge / kubectl  down  Gbit/s +2\.00x')
        self.assertIn('kubectl: echo round 1 failed: x', j['notes'])

    def test_k8sconnect(self):
        with tempfile.TemporaryDirectory() as d:
            errs = []
            for i, (prep, api, wait) in enumerate(((300.0, 150.0, 100.0), (50.0, 30.0, 0.0), (320.0, 160.0, 100.0))):
                errs.append(os.path.join(d, 'e%d' % i))
                with open(errs[-1], 'w') as f:
                    f.write('kbridge: timing: prepare_ms=%s api_ms=%s api_requests=5 csr_wait_ms=%s daemon_ms=20 '
                            'connect_ms=40 total_ms=%s\n' % (prep, api, wait, prep + 60))
            res = ('env binaries b\nenv clk_tck 100\nenv load_before 0.5 0 0\n'
                   'kc cold 1 0 400000 20000 420000 1 %s 9000 8000\nkc warm 1 0 120000 10000 130000 1 %s\n'
                   'kref kubectl 1 ok 150.5 170.2\n'
                   'kc cold 2 0 420000 30000 450000 2 %s\nkc warm 2 1 60000000 0 60000000 0 %s\n'
                   'kref kubectl 2 fail nothing listens on 127.0.0.1:18443\n'
                   'run kbridge down 1 1.0000 20 1000000000\nrun kubectl down 1 0.8000 50 1000000000\n'
                   'run kbridge echo 1 0.3000 30 500000000\nrun kubectl echo 1 0.3000 40 500000000\n'
                   'kc note warm round 2 failed (rc 1): x\n') % (errs[0], errs[1], errs[2], errs[1])
            txt, j = self.run_report(br.report_k8sconnect, res, 2, False, 128, 64, 1)
        self.assertEqual(j['medians']['cold']['total_ms'], 435.0)
        self.assertEqual(j['medians']['cold']['prepare_ms'], 310.0)
        self.assertEqual(j['spread']['cold']['total_ms']['min'], 420.0)
        self.assertEqual(j['medians']['warm']['total_ms'], 130.0)  # the failed run is left out
        self.assertEqual(j['medians']['warm']['cluster_wait_ms'], 30.0)
        self.assertEqual(j['medians']['kubectl']['tls_ms'], 170.2)
        self.assertEqual(j['medians']['cold']['netns_ms'], 8.0)  # only round 1 has it
        self.assertEqual([t['pass'] for t in j['targets']], [True, True, True, True])
        self.assertEqual(j['portforward']['ratios']['kbridge-down/kubectl-down gbit_s']['value'], 1.25)
        self.assertIn('kubectl port-forward round 2: fail nothing listens on 127.0.0.1:18443', j['notes'])
        self.assertIn('kc: warm round 2 failed (rc 1): x', j['notes'])
        self.assertRegex(txt, r'kbridge connect -> first 200 \(wall\) +435 \(420\.\.450\) +130\s')
        self.assertRegex(txt, r'failed: 0, 1')
        self.assertIn('Telepresence is not available', txt)
        self.assertRegex(txt, r'kbridge / kubectl  down  Gbit/s +1\.25x')



class Team(unittest.TestCase):
    def test_report(self):
        with tempfile.TemporaryDirectory() as d:
            res = os.path.join(d, 'results')
            with open(res, 'w') as f:
                f.write(sample('team-results'))
            out = io.StringIO()
            with redirect_stdout(out):
                r = br.report_team(res, os.path.join(d, 'team.json'))
            with open(os.path.join(d, 'team.json')) as f:
                self.assertEqual(json.load(f), r)
        text = out.getvalue()
        new, base = r['builds']['new'], r['builds']['base']
        self.assertEqual(new['rss_kib'], {'before': 14124, 'after': 43128, 'sessions': 1100,
                                          'per_session_kib': 26.4, 'with_routes': 50824})
        self.assertEqual(new['rtt_routes']['control_ms']['p99'], 0.828)
        self.assertEqual(new['intercepts_team']['ok'], 10000)
        self.assertEqual(base['wrk_team']['rps'], 9666.99)
        self.assertEqual(r['env']['machine'], 'AMD EPYC')
        self.assertIn('[new] preview requests, all connected: 1 route 12532 req/s', text)
        self.assertIn('1.33x (target >= 0.90: PASS)', text)
        self.assertIn('0.60x (target >= 0.90: MISS)', text)
        self.assertIn('26.4 KiB per session (target < 64: PASS)', text)
        self.assertIn('control p50 0.062 p99 0.198 ms (target p99 < 5: PASS)', text)


if __name__ == '__main__':
    unittest.main()
