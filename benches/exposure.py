"""The exposure benchmarks (`scripts/bench exposure`): the Rust workloads against the seed's
Python design (benches/baseline/), side by side in one run, on the same broker and database.
Every measure below compares with the baseline measured in the same run; the goals are issue
#19's, and the script prints a Markdown table per measure with the goal and met or missed.

1. API: oha posts at fixed rates to both APIs, running side by side, and to the broker's own
   acks-only producer (benches/broker.rs, MODE=ack: librdkafka with the API's producer
   settings, each message waiting for its ack as a 202 does), one rate at a time, so that the
   three runs at a rate are seconds apart, under the same load from the rest of the machine.
   Then each API's maximum. Each fixed rate runs API_REPEATS times (3), all of it in turn, and
   the run with the median p99 stands for it; the tail's table gives every run's p99.
   - Throughput and p50/p99 latency per rate.
   - CPU per 10,000 accepted events: the CPU seconds (utime + stime from /proc/<pid>/stat, of
     the process and every process below it, and of the children they reaped) of the API read
     right before and right after each oha run, divided by the 202s oha counted. The window is
     the run itself, so it includes what the API spends while idle at that rate; that idle
     cost is printed too. Goal: Rust at most 1/20 of the baseline's, at every fixed rate the
     broker sustains. Beside it, the acks-only run's CPU per 10,000 acks: librdkafka's own
     cost of producing them, without HTTP.
   - Overhead over the broker: the API's p99 minus the acks-only p99 at the same rate. Goal:
     at most 1 ms at every rate the broker sustains (acks-only achieved 97 % of the rate, and
     no produce failed).
   - Where that tail goes: the acks-only run again, while oha sends GET /health to the Rust API
     at the same rate (the machine's HTTP load, without the API's produce path); and over the
     Rust API's run, the machine's busy share (/proc/stat), the cores of the API, the broker
     and its PostgreSQL, and the time their threads waited for a core (schedstat).
2. Sink: N events prefilled on a 12-partition topic per consumer, written into the warehouse
   (the stack's PostgreSQL, in a database of the run's own, whose table starts empty).
   - Rows per second from the first row written (leaving out process start and the consumer
     group's join, which both pay once) and from start.
   - CPU per 100,000 rows: the consumer's CPU seconds (as for the API) over the same window,
     from the poll of the table that first sees a row to the one that sees all N, divided by
     the rows written in it. The CPU is read just before each count, so the window holds the
     work for the rows counted. Goal: Rust at most 1/10 of the baseline's. Beside it, the
     read-only run's CPU per 100,000 messages: librdkafka's own cost of reading them.
   - Against the broker's read ceiling: rows/s ÷ what librdkafka reads from the same broker
     when it discards every message (benches/broker.rs, MODE=read, measured right before the
     sinks). Goal: at least 85 %. Beside it, where the Rust sink's time went over the same
     window: the share spent writing batches (exposure_consumer_write_seconds from its
     /metrics), rows per batch, and the share with its partitions paused at the buffer bound
     (exposure_consumer_paused_seconds). Near 100 % writing, the warehouse bounds it; what is
     neither writing nor paused is waiting for the broker's fetches. And the machine over that
     window: its busy share, and the cores of the sink, the broker, the broker's PostgreSQL and
     the warehouse's.
   - Against the baseline (goal ≥ 10×) and a raw `psql \\copy` of the same rows (goal ≥ 70 %),
     with what a sink at the read ceiling would reach, where the broker bounds them.
3. End to end: p95 from API accept to visible row while oha posts 10k events/s.

Arguments come from the environment: KAFKA_BOOTSTRAP, DATABASE_URL (the local stack's),
RUST_API and RUST_CONSUMER (release binaries), PYTHON (the baseline venv's python), OHA,
BROKER_BENCH (benches/broker.rs, built by `cargo bench --no-run`). Naming parts runs only
those (`EXPOSURE_PARTS="api sink" scripts/bench exposure`). Figures go to stdout;
docs/benchmarks.md records them.
"""

import csv
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
BOOTSTRAP = os.environ["KAFKA_BOOTSTRAP"]
DATABASE_URL = os.environ["DATABASE_URL"]
PYTHON = os.environ["PYTHON"]
OHA = os.environ["OHA"]
RUST_API = os.environ["RUST_API"]
RUST_CONSUMER = os.environ["RUST_CONSUMER"]
BROKER_BENCH = os.environ["BROKER_BENCH"]
RUN = uuid.uuid4().hex[:8]
SINK_EVENTS = int(os.environ.get("SINK_EVENTS", "100000"))
# Not 10,000/s by default: on 2026-12-04, on a loaded machine, acks-only at 10,000/s left tansu
# 0.6 failing every produce until restarted, and the stack's broker is shared. Add it with
# API_RATES on a quiet machine.
RATES = [int(r) for r in os.environ.get("API_RATES", "500,1000,2000,5000").split(",")]
DURATION = os.environ.get("API_DURATION", "10s")
# Each fixed rate runs this many times (acks only, acks with GET load, each API, in turn), and
# the run with the median p99 stands for it: one 10 s run's p99 moves by several ms between
# runs a minute apart, more than the overhead goal's 1 ms.
REPEATS = int(os.environ.get("API_REPEATS", "3"))
COPY = "psql \\copy"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(sql, url=DATABASE_URL):
    out = subprocess.run(
        ["psql", url, "-X", "-v", "ON_ERROR_STOP=1", "-Atc", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def wait_http(port, path="/health", timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
                if b" 200 " in s.recv(100):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"nothing answered 200 on port {port}{path}")


def start(cmd, env):
    full = dict(os.environ, **env)
    full.setdefault("RUST_LOG", "warn")
    return subprocess.Popen(cmd, env=full, stdout=subprocess.DEVNULL)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def create_topic(topic, partitions=12):
    code = (
        "from kafka.admin import KafkaAdminClient, NewTopic\n"
        f"a = KafkaAdminClient(bootstrap_servers={BOOTSTRAP!r})\n"
        f"a.create_topics([NewTopic({topic!r}, {partitions}, 1)])\n"
    )
    subprocess.run([PYTHON, "-c", code], check=True)


# The maximum, and the end-to-end run at 10k/s, use 256 connections. A request waits for the
# broker's ack (about 12 ms on tansu), so 64 connections cannot ask for more than about 5,000/s
# (Little's law) and the client, not the server, would be measured.
MAX_CONNECTIONS = 256
# What the broker must achieve of a rate for it to count as sustained.
SUSTAINED = 0.97
TICK = os.sysconf("SC_CLK_TCK")


def connections(rate):
    """Fixed rates get enough connections for the rate at 25 ms a request (Little's law), 64 at
    the least; the maximum (rate 0) gets MAX_CONNECTIONS."""
    if not rate:
        return MAX_CONNECTIONS
    return min(MAX_CONNECTIONS, max(64, -(-rate * 25 // 1000)))


def processes():
    """Every process' {pid: (comm, ppid, ticks)} from /proc/<pid>/stat, ticks being utime +
    stime + cutime + cstime (its CPU and that of the children it has reaped)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except OSError:
            continue
        # After "(comm)": state, ppid, ..., utime, stime, cutime, cstime (fields 14-17).
        fields = rest.split()
        table[int(entry)] = (head.split("(", 1)[1], int(fields[1]), sum(int(t) for t in fields[11:15]))
    return table


def cpu_seconds(pid):
    """CPU seconds of `pid` and every process below it: utime + stime, and cutime + cstime (the
    children each has reaped), from /proc/<pid>/stat. A forking server is charged for its
    workers."""
    table = processes()
    parents = {p: ppid for p, (_, ppid, _) in table.items()}
    ticks = {p: t for p, (_, _, t) in table.items()}
    tree, todo = set(), [pid]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo += [c for c, parent in parents.items() if parent == p and c not in tree]
    return sum(ticks.get(p, 0) for p in tree) / TICK


def run_queue_seconds(pid):
    """Seconds the threads of `pid` have spent ready to run but waiting for a core: the second
    field of each /proc/<pid>/task/<tid>/schedstat (threads alive at the read)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def stack_processes():
    """The local stack's processes on this machine, by role: {"broker": pid, "broker's
    PostgreSQL": pid, "warehouse": pid}, each the top of its tree (a postmaster is told apart by
    the port in its data directory's postmaster.pid, against DATABASE_URL's). Roles not found are
    left out: tansu and nisshi's other engines have no PostgreSQL of their own."""
    table = processes()
    comm = {p: name for p, (name, _, _) in table.items()}
    parent = {p: ppid for p, (_, ppid, _) in table.items()}
    warehouse_port = urllib.parse.urlsplit(DATABASE_URL).port or 5432
    roles = {}
    for pid, name in comm.items():
        if comm.get(parent[pid]) == name:
            continue
        if name in ("nisshi", "tansu"):
            roles["broker"] = pid
        elif name == "postgres":
            try:
                with open(os.path.join(os.readlink(f"/proc/{pid}/cwd"), "postmaster.pid")) as f:
                    port = int(f.read().splitlines()[3])
            except (OSError, IndexError, ValueError):
                continue
            roles["warehouse" if port == warehouse_port else "broker's PostgreSQL"] = pid
    return roles


def machine_ticks():
    """(busy, all) clock ticks of every core since boot, from /proc/stat's first line; idle and
    iowait are the idle part."""
    with open("/proc/stat") as f:
        ticks = [int(t) for t in f.readline().split()[1:9]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def snapshot(pids):
    """What `shares` compares: the machine's ticks, and the CPU and run-queue seconds of each
    named process tree ({role: pid})."""
    return {"at": time.time(), "ticks": machine_ticks(),
            "cpu": {role: cpu_seconds(pid) for role, pid in pids.items()},
            "queued": {role: run_queue_seconds(pid) for role, pid in pids.items()}}


def shares(before, after):
    """Over the window between two snapshots: the machine's busy share of all its cores, and per
    role the cores it used and the seconds its threads waited for one."""
    wall = after["at"] - before["at"]
    busy = (after["ticks"][0] - before["ticks"][0]) / max(after["ticks"][1] - before["ticks"][1], 1)
    return {"busy": busy,
            "cores": {r: (after["cpu"][r] - before["cpu"][r]) / wall for r in before["cpu"]},
            "queued": {r: after["queued"][r] - before["queued"][r] for r in before["queued"]}}


def cores_note(s, roles):
    """'the machine 93 % busy (of 2 cores): the sink 0.61 cores, the broker 0.52, ...'"""
    parts = [f"{name} {s['cores'][role]:.2f}" for role, name in roles if role in s["cores"]]
    return f"the machine {100 * s['busy']:.0f} % busy (of {os.cpu_count()} cores); in cores: " + ", ".join(parts)


def per(cpu, events, unit):
    """CPU seconds per `unit` events; less than one clock tick counts as one."""
    return max(cpu, 1 / TICK) / max(events, 1) * unit


def verdict(met):
    return "met" if met else "**missed**"


def table(title, header, rows, note=None):
    """One measure as a Markdown table, as docs/benchmarks.md records it."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    if note:
        print(f"\n{note}")


def oha(port, rate, body, duration=DURATION, conns=None):
    args = [OHA, "--no-tui", "--output-format", "json", "-z", duration,
            "-c", str(conns or connections(rate))]
    if rate:
        args += ["-q", str(rate)]
    args += ["-m", "POST", "-H", "content-type: application/json", "-d", json.dumps(body)]
    args.append(f"http://127.0.0.1:{port}/exposure")
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    statuses = r.get("statusCodeDistribution", {})
    ok = statuses.get("202", 0)
    total = sum(statuses.values()) or 1
    return {
        "rps": r["summary"]["requestsPerSec"],
        "ok": ok,
        "ok_rps": r["summary"]["requestsPerSec"] * ok / total,
        "p50_ms": r["latencyPercentiles"]["p50"] * 1000,
        "p99_ms": r["latencyPercentiles"]["p99"] * 1000,
        "non_202": total - ok,
    }


def oha_with_cpu(proc, port, rate, body):
    """oha's figures, with the API's CPU seconds per 10,000 202s over the run, and where the
    machine's time went meanwhile (`shares`, with the API as "api")."""
    pids = {"api": proc.pid, **stack_processes()}
    before = snapshot(pids)
    r = oha(port, rate, body)
    after = snapshot(pids)
    r["cpu_per_10k"] = per(after["cpu"]["api"] - before["cpu"]["api"], r["ok"], 10_000)
    r["shares"] = shares(before, after)
    return r


def acks_under_http_load(port, topic, rate, seconds):
    """benches/broker.rs's acks at `rate` while oha sends GET /health to the API on `port` at
    the same rate and connections: the machine carries the HTTP side of the API's run (oha, the
    API's server) while the broker carries only the acks' produces, as in the plain acks-only
    run. /health asks the broker for metadata at most once a second."""
    load = subprocess.Popen([OHA, "--no-tui", "-z", f"{seconds + 2}s", "-c", str(connections(rate)),
                             "-q", str(rate), f"http://127.0.0.1:{port}/health"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        return broker("ack", topic, RATE=rate, SECONDS=seconds)
    finally:
        load.wait()


def idle_cpu(proc, seconds=3):
    """The share of a core the process uses with nothing to do."""
    before = cpu_seconds(proc.pid)
    time.sleep(seconds)
    return (cpu_seconds(proc.pid) - before) / seconds


def event(experiment):
    return {
        "ds_user_id": "user-1",
        "experiment_id": experiment,
        "variation_id": "control",
        "attributes": {"country": "NL", "plan": "pro"},
        "source": "bench",
    }


def start_apis():
    """Both APIs, each on a port and topic of its own: {name: (process, port)}."""
    commands = {
        # AUTH=none: oha posts without credentials, as to the baseline.
        "rust": ([RUST_API], {"AUTH": "none"}),
        "python": ([PYTHON, os.path.join(HERE, "baseline", "exposure_api.py")], {}),
    }
    for name in commands:
        create_topic(f"bench-api-{name}-{RUN}")
    apis = {}
    for name, (cmd, extra) in commands.items():
        port = free_port()
        env = {"KAFKA_BOOTSTRAP": BOOTSTRAP, "PORT": str(port), "EXPOSURES_TOPIC": f"bench-api-{name}-{RUN}",
               **extra}
        apis[name] = (start(cmd, env), port)
    return apis


def warm_up(apis):
    for _, port in apis.values():
        wait_http(port)
        oha(port, 200, event("warmup"), duration="3s")


def label(rate):
    return f"{rate}/s" if rate else f"max ({MAX_CONNECTIONS} conn.)"


def broker_sustains(acks, rate):
    return acks["acked_per_s"] >= SUSTAINED * rate and not acks["failed"]


def bench_api():
    print(f"\n## API: POST /exposure at fixed rates (oha, {DURATION} per rate, 64 connections or enough "
          f"for 25 ms a request; max: {MAX_CONNECTIONS})")
    topic = f"bench-api-broker-{RUN}"
    create_topic(topic)
    seconds = int(DURATION.rstrip("s"))
    apis = start_apis()
    results, acks, loaded = {}, {}, {}
    try:
        warm_up(apis)
        idle = {name: idle_cpu(proc) for name, (proc, _) in apis.items()}
        print(f"{'':10} {'target':>7} {'conns':>5} {'achieved':>9} {'202/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'errors':>6} {'CPU s/10k':>9}")
        for rate in RATES + [0]:
            runs = {}
            for _ in range(REPEATS if rate else 1):
                if rate:
                    a = broker("ack", topic, RATE=rate, SECONDS=seconds)
                    runs.setdefault("acks", []).append(a)
                    print(f"{'acks only':10} {rate:>7} {'':>5} {a['acked_per_s']:>9.0f} {a['acked_per_s']:>8.0f} "
                          f"{a['p50_ms']:>7.2f} {a['p99_ms']:>7.2f} {a['failed']:>6}")
                    a = acks_under_http_load(apis["rust"][1], topic, rate, seconds)
                    runs.setdefault("loaded", []).append(a)
                    print(f"{'+ GET load':10} {rate:>7} {connections(rate):>5} {a['acked_per_s']:>9.0f} "
                          f"{a['acked_per_s']:>8.0f} {a['p50_ms']:>7.2f} {a['p99_ms']:>7.2f} {a['failed']:>6}")
                for name, (proc, port) in apis.items():
                    r = oha_with_cpu(proc, port, rate, event(f"bench-api-{RUN}"))
                    runs.setdefault(name, []).append(r)
                    print(f"{name:10} {rate or 'max':>7} {connections(rate):>5} {r['rps']:>9.0f} {r['ok_rps']:>8.0f} "
                          f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['non_202']:>6} {r['cpu_per_10k']:>9.3f}")
            if rate:
                acks[rate], loaded[rate] = median_run(runs["acks"]), median_run(runs["loaded"])
            for name in apis:
                results[(name, rate)] = median_run(runs[name])
    finally:
        for proc, _ in apis.values():
            stop(proc)
    report_api_throughput(results)
    report_api_cpu(results, acks, idle)
    report_api_overhead(results, acks)
    report_api_tail(results, acks, loaded)


def median_run(runs):
    """Of one measure's runs at a rate, the one with the median p99, with every run's p99
    ("p99_runs", in the order they ran)."""
    ordered = sorted(runs, key=lambda r: r["p99_ms"])
    return {**ordered[len(ordered) // 2], "p99_runs": [r["p99_ms"] for r in runs]}


def spread(run):
    return ", ".join(f"{p:.1f}" for p in run["p99_runs"])


def report_api_throughput(results):
    rust, python = results[("rust", 0)], results[("python", 0)]
    print(f"\nmax throughput ratio rust/python: {rust['ok_rps'] / max(python['ok_rps'], 1):.1f}x")
    best = max((r for (n, rate), r in results.items() if n == "rust" and rate and r["p99_ms"] <= 10),
               key=lambda r: r["ok_rps"], default=None)
    if best:
        print(f"highest fixed rate the Rust API held at p99 <= 10 ms: {best['ok_rps']:.0f}/s "
              f"({best['ok_rps'] / max(python['ok_rps'], 1):.1f}x the baseline's max)")


def report_api_cpu(results, acks, idle):
    rows = []
    for rate in RATES + [0]:
        rust, python = results[("rust", rate)], results[("python", rate)]
        share = python["cpu_per_10k"] / rust["cpu_per_10k"]
        if not rate:
            judged = "(not a fixed rate)"
        elif not broker_sustains(acks[rate], rate):
            judged = "(the broker does not sustain it)"
        else:
            judged = verdict(share >= 20)
        alone = f'{per(acks[rate]["cpu_s"], acks[rate]["acked"], 10_000):.3f}' if rate else ""
        rows.append([label(rate), f"{rust['ok_rps']:,.0f}/s", f"{rust['cpu_per_10k']:.3f}",
                     f"{python['ok_rps']:,.0f}/s", f"{python['cpu_per_10k']:.3f}", f"1/{share:.1f}", judged, alone])
    table("API CPU seconds per 10,000 accepted events (goal: Rust ≤ 1/20 of the baseline's)",
          ["rate", "Rust 202/s", "Rust CPU s", "Python 202/s", "Python CPU s", "Rust/Python", "result",
           "acks only CPU s"], rows,
          f"Idle, before the runs: Rust {100 * idle['rust']:.2f} %, Python {100 * idle['python']:.2f} % of a core "
          "(included in each run's window). Acks only: benches/broker.rs's whole run per 10,000 acks, "
          "librdkafka producing with the API's settings and no HTTP.")


def report_api_overhead(results, acks):
    rows = []
    for rate in RATES:
        a, rust, python = acks[rate], results[("rust", rate)], results[("python", rate)]
        over = rust["p99_ms"] - a["p99_ms"]
        judged = verdict(over <= 1) if broker_sustains(a, rate) else "(the broker does not sustain it)"
        rows.append([label(rate), f"{a['acked_per_s']:,.0f}/s", f"{a['p99_ms']:.2f}",
                     f"{rust['ok_rps']:,.0f}/s", f"{rust['p99_ms']:.2f}", f"{over:+.2f}",
                     f"{python['ok_rps']:,.0f}/s", f"{python['p99_ms'] - a['p99_ms']:+.2f}", judged])
    table("API p99 over the broker's acks-only p99, ms (goal: Rust ≤ 1 ms at every rate the broker sustains)",
          ["rate", "acks only", "its p99", "Rust", "its p99", "Rust − acks", "Python", "Python − acks", "result"], rows)


def report_api_tail(results, acks, loaded):
    rows = []
    for rate in RATES:
        rust = results[("rust", rate)]
        where = rust["shares"]
        ok = max(rust["ok"], 1)
        broker_wait = where["queued"].get("broker")
        rows.append([label(rate), spread(acks[rate]), spread(loaded[rate]), spread(rust),
                     f"{acks[rate]['p99_ms']:.2f}", f"{loaded[rate]['p99_ms']:.2f}",
                     f"{rust['p99_ms']:.2f}", f"{rust['p99_ms'] - loaded[rate]['p99_ms']:+.2f}",
                     f"{100 * where['busy']:.0f} %", f"{where['cores']['api']:.2f}",
                     f"{1000 * where['queued']['api'] / ok:.3f}",
                     "" if broker_wait is None else f"{1000 * broker_wait / ok:.3f}"])
    table("Where the Rust API's p99 over acks-only goes: the acks-only p99 again while oha sends GET /health "
          "to the API at the same rate, and the machine during the API's run",
          ["rate", "acks only p99s", "with GET load p99s", "Rust p99s", "acks only median p99",
           "with GET load", "Rust", "Rust − loaded acks", "machine busy",
           "API cores", "API run-queue ms / request", "broker run-queue ms / request"], rows,
          f"p99s: each of the {REPEATS} runs' p99 in ms, in the order they ran; the median run stands for the rate "
          "in every table. With GET load: benches/broker.rs's acks while oha drives the API's HTTP side (GET /health, no produce) "
          "at the rate: the machine's HTTP load without the API's produce path. Where the loaded acks' p99 comes "
          "near the API's, the tail is the machine's load on the broker's acks, not the API's own work. Run-queue: "
          "the seconds the process' threads waited for a core (/proc/<pid>/task/*/schedstat) over the API's "
          "median run, per 202.")


def broker(mode, topic, **env):
    """benches/broker.rs: the broker's read ceiling or its produce-ack latency, with the CPU
    seconds of the whole run (librdkafka's own cost, for comparison with the workloads')."""
    env = {**os.environ, "MODE": mode, "TOPIC": topic, **{k: str(v) for k, v in env.items()}}
    before = children_cpu()
    out = subprocess.run([BROKER_BENCH, "--bench"], env=env, check=True, capture_output=True, text=True)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "cpu_s": children_cpu() - before}


def children_cpu():
    """CPU seconds of this script's children that have exited (getrusage)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def produce(topic, n, experiment):
    """Prefills `topic` with n events of `experiment` (kafka-python, batched)."""
    code = f"""
import json, sys, uuid
from datetime import datetime, timezone
from kafka import KafkaProducer
p = KafkaProducer(bootstrap_servers={BOOTSTRAP!r}, acks="all", linger_ms=20, batch_size=262144)
now = datetime.now(timezone.utc).isoformat()
for i in range({n}):
    e = {{"exposure_id": str(uuid.uuid4()), "ds_user_id": f"user-{{i % 5000}}",
          "experiment_id": {experiment!r}, "variation_id": "control" if i % 2 else "treatment",
          "attributes": {{"i": i}}, "source": "bench", "timestamp": now, "accepted_at": now}}
    p.send({topic!r}, key=e["ds_user_id"].encode(), value=json.dumps(e).encode())
p.flush()
"""
    subprocess.run([PYTHON, "-c", code], check=True)


def ensure_table(url=DATABASE_URL):
    """The warehouse table, as the Rust consumer creates it (consumers/exposure-consumer/src/
    dialect.rs), so that it exists before anything is timed, on a new database too."""
    psql("CREATE SCHEMA IF NOT EXISTS growthbook; CREATE TABLE IF NOT EXISTS growthbook.experiment_exposures ("
         "exposure_id varchar(64) PRIMARY KEY, ds_user_id varchar(256) NOT NULL, experiment_id varchar(256) NOT NULL, "
         "variation_id varchar(256) NOT NULL, ts timestamptz NOT NULL, attributes jsonb NOT NULL DEFAULT '{}'::jsonb, "
         "source varchar(256) NOT NULL, created_at timestamptz NOT NULL DEFAULT now())", url)


# The sinks' database: a database of this run's own, with the table (sink_database).
SINK_DATABASE = f"bench_sink_{RUN}"


def sink_database():
    """Creates SINK_DATABASE with the table, and returns its URL: the table the sinks write and
    the polls count starts empty in every run, where the stack's table grows with every test and
    benchmark (and a count of a sink's rows would scan all of it)."""
    name = SINK_DATABASE
    psql(f"CREATE DATABASE {name}")
    url = DATABASE_URL.rsplit("/", 1)[0] + "/" + name
    ensure_table(url)
    return url


def count(experiment, url=DATABASE_URL):
    return int(psql(f"SELECT count(*) FROM growthbook.experiment_exposures WHERE experiment_id = '{experiment}'", url))


def sink_figures(port):
    """From exposure-consumer's /metrics: the time its written batches took to write, how many
    there were, and the time it held its partitions paused (exposure_consumer_write_seconds and
    exposure_consumer_paused_seconds). None for the baseline, which has no /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    figures = dict(line.split(" ", 1) for line in text.splitlines()
                   if line.startswith(("exposure_consumer_write_seconds_", "exposure_consumer_paused_seconds_")))
    names = ["exposure_consumer_write_seconds_sum", "exposure_consumer_write_seconds_count",
             "exposure_consumer_paused_seconds_total"]
    if not all(n in figures for n in names):
        return None
    return tuple(float(figures[n]) for n in names)


def sink_run(name, cmd, env, experiment, n):
    """Runs one consumer until the table holds all n rows. Returns rows/s from start, and rows/s
    and CPU seconds per 100,000 rows from the first row written: that window leaves out the
    process start and the consumer group's join, which both consumers pay once. Over the same
    window, for a consumer with /metrics (sink_figures): the shares of the time it spent
    writing batches and with its partitions paused, and rows per batch."""
    t0 = time.time()
    proc = start(cmd, env)
    pids = {"sink": proc.pid, **stack_processes()}
    first = None
    try:
        while True:
            # The CPU first: what it holds is then the work for the rows counted just after.
            cpu, rows, now = cpu_seconds(proc.pid), count(experiment, env["DATABASE_URL"]), time.time()
            if first is None and rows > 0:
                first = (now, cpu, rows, sink_figures(env["PORT"]), snapshot(pids))
            if rows >= n:
                break
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited with {proc.returncode}")
            time.sleep(0.05)
        written, machine = sink_figures(env["PORT"]), snapshot(pids)
        t1, cpu1, rows1, written1, machine1 = first
        result = {
            "from_start": n / (now - t0),
            "steady": (rows - rows1) / (now - t1) if now > t1 else float("nan"),
            "start_s": t1 - t0,
            "cpu_per_100k": per(cpu - cpu1, rows - rows1, 100_000),
            "shares": shares(machine1, machine),
        }
        if written and written1 and written[1] > written1[1]:
            window = time.time() - t1
            result["writing"] = (written[0] - written1[0]) / window
            result["rows_per_batch"] = (rows - rows1) / (written[1] - written1[1])
            result["paused"] = (written[2] - written1[2]) / window
        return result
    finally:
        stop(proc)


def consumer_env(name, topic, url):
    # No STOP_AFTER for the baseline: it would exit at its last row, and its CPU is read from
    # /proc until the table holds them all.
    return {
        "KAFKA_BOOTSTRAP": BOOTSTRAP, "DATABASE_URL": url, "EXPOSURES_TOPIC": topic,
        "KAFKA_GROUP": f"bench-{name}-{RUN}", "PORT": str(free_port()), "DLQ_TOPIC": f"{topic}.dlq",
    }


def copy_rate(n, url):
    """rows/s of psql's \\copy of n rows like the sinks', straight into the table."""
    experiment = f"bench-sink-copy-{RUN}"
    now = datetime.now(timezone.utc).isoformat()
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        w = csv.writer(f)
        for i in range(n):
            w.writerow([str(uuid.uuid4()), f"user-{i % 5000}", experiment,
                        "control" if i % 2 else "treatment", now, json.dumps({"i": i}), "bench"])
        path = f.name
    t0 = time.time()
    subprocess.run(
        ["psql", url, "-X", "-v", "ON_ERROR_STOP=1", "-c",
         f"\\copy growthbook.experiment_exposures (exposure_id, ds_user_id, experiment_id, variation_id, ts, attributes, source) FROM '{path}' WITH (FORMAT csv)"],
        check=True, capture_output=True,
    )
    rate = n / (time.time() - t0)
    os.unlink(path)
    return rate


def bench_sink():
    n = SINK_EVENTS
    print(f"\n## Sink: {n} events from a prefilled 12-partition topic into the warehouse")
    consumers = {
        "rust": [RUST_CONSUMER],
        "python": [PYTHON, os.path.join(HERE, "baseline", "exposure_consumer.py")],
    }
    # Every topic is filled before anything is timed, so the ceiling is read right before the
    # sinks.
    for name in ["ceiling", *consumers]:
        topic = f"bench-sink-{name}-{RUN}"
        create_topic(topic)
        produce(topic, n, topic)
    ceiling = broker("read", f"bench-sink-ceiling-{RUN}", EVENTS=n)
    print(f"{'read only':10} {ceiling['rows_per_s']:>8.0f} rows/s from start, {ceiling['rows_per_s_from_first']:>8.0f} "
          "rows/s from the first message (librdkafka, discarding)")
    results, url = {}, sink_database()
    try:
        for name, cmd in consumers.items():
            topic = f"bench-sink-{name}-{RUN}"
            r = results[name] = sink_run(name, cmd, consumer_env(name, topic, url), topic, n)
            print(f"{name:10} {r['from_start']:>8.0f} rows/s from start, {r['steady']:>8.0f} rows/s from the first "
                  f"row ({r['start_s']:.1f} s to the first row), {r['cpu_per_100k']:.2f} CPU s per 100,000 rows")
            if "writing" in r:
                print(f"{'':10} writing batches {100 * r['writing']:.0f} % of the time, {r['rows_per_batch']:,.0f} "
                      f"rows per batch; partitions paused {100 * r['paused']:.0f} % of the time")
            print(f"{'':10} {cores_note(r['shares'], SINK_ROLES)}")
        copy = copy_rate(n, url)
    finally:
        psql(f"DROP DATABASE IF EXISTS {SINK_DATABASE} WITH (FORCE)")
    print(f"{COPY:10} {copy:>8.0f} rows/s")
    report_sink(results, copy, ceiling)


# The processes a sink run keeps busy, as cores_note names them.
SINK_ROLES = [("sink", "the sink"), ("broker", "the broker"), ("broker's PostgreSQL", "the broker's PostgreSQL"),
              ("warehouse", "the warehouse's PostgreSQL")]


def sink_note(rust):
    """Where the Rust sink's window went, and what bounds it by those figures."""
    writing, paused = rust["writing"], rust["paused"]
    bound = ("its writes bound it (the warehouse's transactions)" if writing >= 0.8 else
             "for the time neither writing nor paused its next batch was not due yet: it waited for the "
             "broker's fetches")
    return (f"Rust spent {100 * writing:.0f} % of the window writing batches of {rust['rows_per_batch']:,.0f} rows "
            f"on average (exposure_consumer_write_seconds) and held its partitions paused {100 * paused:.0f} % of "
            f"it (exposure_consumer_paused_seconds): {bound}. Over the same window, "
            f"{cores_note(rust['shares'], SINK_ROLES)}. The read ceiling was measured with the warehouse idle.")


def report_sink(results, copy, reader):
    rust, python, ceiling = results["rust"], results["python"], reader["rows_per_s_from_first"]
    share = python["cpu_per_100k"] / rust["cpu_per_100k"]
    table("Sink CPU seconds per 100,000 rows written (goal: Rust ≤ 1/10 of the baseline's)",
          ["Rust", "Python", "Rust/Python", "result", "read only"],
          [[f"{rust['cpu_per_100k']:.2f}", f"{python['cpu_per_100k']:.2f}", f"1/{share:.1f}", verdict(share >= 10),
            f"{per(reader['cpu_s'], reader['messages'], 100_000):.2f}"]],
          "Read only: benches/broker.rs's whole run (group join included) per 100,000 messages, "
          "librdkafka reading and discarding.")
    table("Sink rows/s from the first row against the broker's read ceiling (goal: Rust ≥ 85 %)",
          ["", "rows/s", "of the ceiling", "result"],
          [["read only (librdkafka, discarding)", f"{ceiling:,.0f}", "100 %", ""],
           ["Rust", f"{rust['steady']:,.0f}", f"{100 * rust['steady'] / ceiling:.0f} %",
            verdict(rust["steady"] >= 0.85 * ceiling)],
           ["Python", f"{python['steady']:,.0f}", f"{100 * python['steady'] / ceiling:.0f} %", ""]],
          sink_note(rust) if "writing" in rust else None)
    table("Sink rows/s from the first row against the baseline and \\copy",
          ["Rust against", "rows/s", "Rust's share", "goal", "result", "a sink at the read ceiling"],
          [["Python", f"{python['steady']:,.0f}", f"{rust['steady'] / python['steady']:.1f}×", "≥ 10×",
            verdict(rust["steady"] >= 10 * python["steady"]), f"{ceiling / python['steady']:.1f}×"],
           [COPY, f"{copy:,.0f}", f"{100 * rust['steady'] / copy:.0f} %", "≥ 70 %",
            verdict(rust["steady"] >= 0.7 * copy), f"{100 * ceiling / copy:.0f} %"]],
          "The last column is the share a sink reading as fast as librdkafka discarding would reach: where it "
          "misses the goal too, the broker bounds the measure.")


def bench_e2e():
    rate = int(os.environ.get("E2E_RATE", "10000"))
    print(f"\n## End to end: API accept to visible row, oha at {rate} events/s for 20 s ({MAX_CONNECTIONS} connections)")
    topic = experiment = f"bench-e2e-{RUN}"
    create_topic(topic)
    api_port, consumer_port = free_port(), free_port()
    api = start([RUST_API], {"KAFKA_BOOTSTRAP": BOOTSTRAP, "PORT": str(api_port), "EXPOSURES_TOPIC": topic,
                             "AUTH": "none"})
    consumer = start([RUST_CONSUMER], {
        "KAFKA_BOOTSTRAP": BOOTSTRAP, "DATABASE_URL": DATABASE_URL, "EXPOSURES_TOPIC": topic,
        "KAFKA_GROUP": f"bench-e2e-{RUN}", "PORT": str(consumer_port), "DLQ_TOPIC": f"{topic}.dlq",
    })
    try:
        wait_http(api_port)
        r = oha(api_port, rate, event(experiment), duration="20s", conns=MAX_CONNECTIONS)
        accepted = round(r["ok_rps"] * 20)
        deadline = time.time() + 60
        while count(experiment) < accepted * 0.99 and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(2)
        # ts is the API's accept time (no timestamp in the body); created_at is the insert
        # transaction's start, so this slightly understates the commit's visibility.
        row = psql(
            "SELECT count(*), "
            "round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - ts))::numeric, 1), "
            "round(1000 * percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - ts))::numeric, 1), "
            "round(1000 * max(extract(epoch FROM created_at - ts))::numeric, 1) "
            f"FROM growthbook.experiment_exposures WHERE experiment_id = '{experiment}'"
        )
        rows, p50, p95, worst = row.split("|")
        print(f"achieved {r['ok_rps']:.0f} accepted/s (API p99 {r['p99_ms']:.2f} ms); {rows} rows; "
              f"accept→row p50 {p50} ms, p95 {p95} ms, max {worst} ms")
    finally:
        stop(api)
        stop(consumer)


if __name__ == "__main__":
    parts = sys.argv[1:] or ["api", "sink", "e2e"]
    print(f"# exposure benchmarks, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, run {RUN}")
    ensure_table()
    for part in parts:
        {"api": bench_api, "sink": bench_sink, "e2e": bench_e2e}[part]()
