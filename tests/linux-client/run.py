#!/usr/bin/env python3
"""The Linux kernel's NLM client against brlockd: the host side of the kernel-client suite.

Everything runs inside a network namespace this script makes and deletes (no packet leaves the
machine; no QEMU user-mode networking):

    namespace brlk-lc-<pid>, its own /run (so its rpcbind never meets the machine's)
      tap0 10.99.0.1/24 ── QEMU/TCG guest 10.99.0.2 (Debian's 6.1 kernel, busybox, locktest)
      rpcbind            the server host's portmapper (the guest's lockd asks it for NLM)
      NFS-Ganesha        NFSv3 + MOUNT for the export, its own NLM off
      brlockd            NLM 1/3/4 on 10.99.0.1:4045, from the tree
      tcpdump            every packet on tap0, checked with tshark afterwards

The guest reports each case on its serial console (BRLOCK-CASE lines, see guest/locktest.c); this
script prints one line per case and closes with `N passed, M failed`. Exit status 0 only when every
expected case passed. Every process started here is stopped by its PID, also on failure or
time-out, and the namespace is deleted.

Usage (as root): run.py [--server brlockd|brlockd-ha|brlock-nfsd|ganesha] [--brlockd PATH] [--only a,b] [--timeout S]
  --server brlockd-ha   two brlockd on one PostgreSQL database (the machine's, reached through its
                        Unix socket, bind-mounted into the namespace) and the same address: a leader
                        and a hot standby. A guest's "restart" kills (or stops) the leader and the
                        standby takes over; only the restart cases run (a lock held in the guest
                        survives a failover), and a new standby is started after each.
  --server brlock-nfsd  brlock-nfsd alone: NFSv3, MOUNT and NLM in one process, no Ganesha
  --server ganesha      the reference run: Ganesha's own NLM (and rpc.statd), no brlockd
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SERVER_IP = "10.99.0.1"
GUEST_IP = "10.99.0.2"
NLM_PORT = 4045
GUEST_LOCKD_PORT = 4001
# The machine's PostgreSQL socket directory (Debian), for --server brlockd-ha.
PG_SOCKET_DIR = "/run/postgresql"
HA_CASES = "a_held_lock_survives_a_server_crash,a_held_lock_survives_a_clean_server_restart"
GANESHA_NLM_PORT = 32803


def log(msg):
    print(f"linux-client: {msg}", flush=True)


def wait_until(pred, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def rpcinfo_has(program, version=None):
    out = subprocess.run(["rpcinfo", "-p", "127.0.0.1"], capture_output=True, text=True).stdout
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == str(program) and (version is None or fields[1] == str(version)):
            return True
    return False


class Processes:
    """Every process this run starts, stopped by PID in reverse order."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.started = []  # (name, Popen)

    def start(self, name, argv, **kw):
        out = open(os.path.join(self.workdir, f"{name}.log"), "ab")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
        self.started.append((name, proc))
        return proc

    def stop(self, name, sig=signal.SIGTERM, grace=5.0):
        for n, proc in self.started:
            if n == name:
                stop_process(proc, sig, grace)
        self.started = [(n, p) for n, p in self.started if n != name]

    def stop_all(self):
        for name, proc in reversed(self.started):
            # tcpdump flushes its file on SIGINT; the rest need no courtesy in a test.
            sig = signal.SIGINT if name == "tcpdump" else signal.SIGKILL
            stop_process(proc, sig, 5.0)

    def log_tail(self, name, lines=30):
        path = os.path.join(self.workdir, f"{name}.log")
        try:
            with open(path, "rb") as f:
                return f.read().decode(errors="replace").splitlines()[-lines:]
        except OSError:
            return []


def stop_process(proc, sig, grace):
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


GANESHA_CONF = """
NFS_CORE_PARAM {{
    Bind_addr = {server_ip};
    Protocols = 3;
    Enable_NLM = {nlm};
    Enable_RQUOTA = false;
    Enable_UDP = {udp};
    NFS_Port = 2049;
    MNT_Port = 20048;
    NLM_Port = {nlm_port};
}}
NFSV4 {{ Graceless = true; RecoveryBackend = fs; RecoveryRoot = {dir}/grecov; }}
NFS_KRB5 {{ Active_krb5 = false; }}
LOG {{ Default_Log_Level = EVENT; }}
EXPORT {{
    Export_Id = 1;
    Path = {dir}/export;
    Pseudo = /export;
    Access_Type = RW;
    Squash = No_Root_Squash;
    Protocols = 3;
    Transports = {transports};
    SecType = sys;
    CLIENT {{ Clients = {guest_ip}; Access_Type = RW; }}
    FSAL {{ Name = VFS; }}
}}
"""


class Suite:
    def __init__(self, args, workdir):
        self.args = args
        self.dir = workdir
        self.procs = Processes(workdir)
        self.results = {}  # case -> (ok, detail)
        self.infos = []
        # --server brlockd-ha: the PostgreSQL URL, and the names of the leader and the standby.
        self.pg_url = None
        self.ha_leader = None
        self.ha_standby = None
        self.ha_started = 0

    # -- the server host -------------------------------------------------------------------
    def network(self):
        run(["ip", "link", "set", "lo", "up"])
        run(["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"])
        run(["ip", "addr", "add", f"{SERVER_IP}/24", "dev", "tap0"])
        run(["ip", "link", "set", "tap0", "up"])

    def rpcbind(self):
        os.makedirs("/run/rpcbind", exist_ok=True)
        self.procs.start("rpcbind", ["rpcbind", "-f", "-w"])
        if not wait_until(lambda: rpcinfo_has(100000), 10):
            raise SetupError("rpcbind did not start")

    def statd(self):
        sm = os.path.join(self.dir, "statd")
        for d in ("sm", "sm.bak"):
            os.makedirs(os.path.join(sm, d), exist_ok=True)
        self.procs.start("statd", ["rpc.statd", "-F", "-L", "--no-notify", "-P", sm])
        if not wait_until(lambda: rpcinfo_has(100024), 10):
            raise SetupError("rpc.statd did not register")

    def ganesha(self, nlm):
        export = os.path.join(self.dir, "export")
        os.makedirs(export, exist_ok=True)
        os.chmod(export, 0o777)
        os.makedirs(os.path.join(self.dir, "grecov"), exist_ok=True)
        conf = os.path.join(self.dir, "ganesha.conf")
        with open(conf, "w") as f:
            f.write(GANESHA_CONF.format(
                server_ip=SERVER_IP, guest_ip=GUEST_IP, dir=self.dir,
                nlm="true" if nlm else "false", udp="true" if nlm else "false",
                nlm_port=GANESHA_NLM_PORT, transports="UDP, TCP" if nlm else "TCP"))
        self.procs.start("ganesha", [
            "ganesha.nfsd", "-F", "-f", conf, "-L", os.path.join(self.dir, "ganesha.log.txt"),
            "-p", os.path.join(self.dir, "ganesha.pid"), "-N", "NIV_EVENT"])
        want = [(100003, 3), (100005, 3)] + ([(100021, 4)] if nlm else [])
        if not wait_until(lambda: all(rpcinfo_has(p, v) for p, v in want), 30):
            raise SetupError("Ganesha did not register NFS/MOUNT" + ("/NLM" if nlm else ""))
        return export

    def brlockd(self):
        """Starts brlockd (again, after a restart: on the same store, its log appended)."""
        store = os.path.join(self.dir, "brlock.db")
        argv = [self.args.brlockd, "--listen", f"{SERVER_IP}:{NLM_PORT}", "--store", f"sqlite://{store}",
                "--rpcbind", "127.0.0.1:111", "--allow", f"{SERVER_IP.rsplit('.', 1)[0]}.0/24",
                "--grace", "30"] + self.args.brlockd_arg
        proc = self.procs.start("brlockd", argv, env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info")))
        # After a restart rpcbind still lists the dead instance until the new one registers.
        if not wait_until(lambda: proc.poll() is not None or
                          ("listening on" in "\n".join(self.procs.log_tail("brlockd", 50)) and rpcinfo_has(100021, 4)), 30):
            raise SetupError("brlockd did not start and register NLM v4 with rpcbind")
        if proc.poll() is not None:
            raise SetupError(f"brlockd exited with {proc.returncode}")

    def ha_instance(self):
        """Starts one more brlockd on the shared PostgreSQL store and the same address; returns its
        process name (brlockd-1, brlockd-2, …)."""
        self.ha_started += 1
        name = f"brlockd-{self.ha_started}"
        argv = [self.args.brlockd, "--listen", f"{SERVER_IP}:{NLM_PORT}", "--store", self.pg_url,
                "--rpcbind", "127.0.0.1:111", "--allow", f"{SERVER_IP.rsplit('.', 1)[0]}.0/24",
                "--grace", "30"] + self.args.brlockd_arg
        self.procs.start(name, argv, env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info")))
        return name

    def ha_serves(self, name):
        log_text = "\n".join(self.procs.log_tail(name, 200))
        return "listening on" in log_text and rpcinfo_has(100021, 4)

    def ha_waits(self, name):
        return "standby: waiting for the leader" in "\n".join(self.procs.log_tail(name, 200))

    def brlockd_ha(self):
        """A leader, then a standby, on one PostgreSQL database and one address."""
        self.ha_leader = self.ha_instance()
        if not wait_until(lambda: self.ha_serves(self.ha_leader), 30):
            raise SetupError("the first brlockd did not start and register NLM v4 with rpcbind")
        self.ha_standby = self.ha_instance()
        if not wait_until(lambda: self.ha_waits(self.ha_standby), 30):
            raise SetupError("the second brlockd did not wait as a standby")

    def ha_failover(self, sig):
        """Stops the leader with `sig`; the standby must take over, serve the same address and
        register with rpcbind. A new standby follows."""
        old, new = self.ha_leader, self.ha_standby
        t0 = time.monotonic()
        self.procs.stop(old, sig, grace=15.0)
        if not wait_until(lambda: self.ha_serves(new), 30):
            return f"the standby {new} did not take over within 30 s"
        log(f"failover: {old} stopped with {sig.name}; {new} serves after {time.monotonic() - t0:.1f} s")
        self.ha_leader = new
        self.ha_standby = self.ha_instance()
        if not wait_until(lambda: self.ha_waits(self.ha_standby), 30):
            return f"the new standby {self.ha_standby} did not wait"
        return None

    def nfsd(self):
        """Starts brlock-nfsd (again, after a restart: on the same store and export)."""
        export = os.path.join(self.dir, "export")
        os.makedirs(export, exist_ok=True)
        os.chmod(export, 0o777)
        store = os.path.join(self.dir, "nfsd.db")
        argv = [self.args.nfsd, "--export", export, "--listen", f"{SERVER_IP}:2049",
                "--nlm-listen", f"{SERVER_IP}:{NLM_PORT}", "--store", f"sqlite://{store}",
                "--rpcbind", "127.0.0.1:111", "--allow", f"{SERVER_IP.rsplit('.', 1)[0]}.0/24",
                "--grace", "30"]
        proc = self.procs.start("brlock-nfsd", argv, env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info")))
        want = [(100003, 3), (100005, 3), (100021, 4)]
        if not wait_until(lambda: proc.poll() is not None or
                          ("exporting" in "\n".join(self.procs.log_tail("brlock-nfsd", 50))
                           and all(rpcinfo_has(p, v) for p, v in want)), 30):
            raise SetupError("brlock-nfsd did not start and register NFS, MOUNT and NLM with rpcbind")
        if proc.poll() is not None:
            raise SetupError(f"brlock-nfsd exited with {proc.returncode}")
        return export

    def host_action(self, what):
        """What a guest case asks of the server host; returns None when done, else why not."""
        if self.args.server == "brlockd-ha" and what in ("restart-kill", "restart-term"):
            return self.ha_failover(signal.SIGKILL if what == "restart-kill" else signal.SIGTERM)
        restart = {"brlockd": self.brlockd, "brlock-nfsd": self.nfsd}.get(self.args.server)
        if restart is None:
            return f"{what} is not supported with --server {self.args.server}"
        if what in ("restart-kill", "restart-term"):
            sig = signal.SIGKILL if what == "restart-kill" else signal.SIGTERM
            self.procs.stop(self.args.server, sig, grace=15.0)
            log(f"{what}: {self.args.server} stopped with {sig.name}; starting it again on the same store")
            try:
                restart()
            except SetupError as e:
                return str(e)
            return None
        return f"unknown action {what}"

    def tcpdump(self):
        pcap = os.path.join(self.dir, "tap0.pcap")
        self.procs.start("tcpdump", ["tcpdump", "-i", "tap0", "-U", "-n", "-s", "0", "-w", pcap])
        if not wait_until(lambda: "listening on" in "\n".join(self.procs.log_tail("tcpdump")), 10):
            raise SetupError("tcpdump did not start")
        return pcap

    # -- the guest ---------------------------------------------------------------------------
    def guest(self, export):
        gdir = self.args.guest_dir
        console = os.path.join(self.dir, "console.log")
        cmdline = [
            "console=ttyS0", "quiet", "panic=-1",
            f"brlock.server={SERVER_IP}", f"brlock.ip={GUEST_IP}", f"brlock.export={export}",
            f"brlock.lockd_port={GUEST_LOCKD_PORT}",
        ]
        if self.args.only:
            cmdline.append(f"brlock.only={self.args.only}")
        if self.args.skip:
            cmdline.append(f"brlock.skip={self.args.skip}")
        control = os.path.join(self.dir, "control.sock")
        cmdline.append("brlock.control=/dev/ttyS1")
        argv = [
            "qemu-system-x86_64", "-nodefaults", "-display", "none", "-no-reboot",
            "-m", "384", "-smp", "1",
            "-kernel", os.path.join(gdir, "vmlinuz"), "-initrd", os.path.join(gdir, "initramfs.cpio.gz"),
            "-append", " ".join(cmdline),
            "-serial", f"file:{console}",
            "-chardev", f"socket,id=ctl,path={control},server=on,wait=off",
            "-serial", "chardev:ctl",
            "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
            "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:b1:0c:01",
        ]
        qemu = self.procs.start("qemu", argv)
        ctl = None
        if wait_until(lambda: qemu.poll() is not None or os.path.exists(control), 10) and qemu.poll() is None:
            ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            ctl.connect(control)
            ctl.setblocking(False)
        return qemu, console, ctl

    def follow(self, qemu, console, ctl, deadline):
        """Reads the console until BRLOCK-DONE, QEMU's exit or the deadline, and carries out what
        the guest asks on the control channel; returns the console's lines."""
        seen = 0
        lines = []
        done = False
        pending = b""
        while time.monotonic() < deadline and not done:
            exited = qemu.poll() is not None
            if ctl is not None:
                try:
                    pending += ctl.recv(4096)
                except (BlockingIOError, InterruptedError):
                    pass
                while b"\n" in pending:
                    raw, pending = pending.split(b"\n", 1)
                    m = re.match(r"BRLOCK-SYNC (\S+)", raw.decode(errors="replace").strip())
                    if not m:
                        continue
                    what = m.group(1)
                    refused = self.host_action(what)
                    reply = f"BRLOCK-GO {what}\n" if refused is None else f"BRLOCK-REFUSED {what} {refused}\n"
                    ctl.setblocking(True)
                    ctl.sendall(reply.encode())
                    ctl.setblocking(False)
            try:
                with open(console, "rb") as f:
                    f.seek(seen)
                    chunk = f.read()
            except FileNotFoundError:
                chunk = b""
            if chunk:
                # Only whole lines; the rest waits for the next read.
                cut = chunk.rfind(b"\n") + 1
                seen += cut
                for raw in chunk[:cut].decode(errors="replace").splitlines():
                    line = raw.strip("\r")
                    lines.append(line)
                    self.on_line(line)
                    if line.startswith("BRLOCK-DONE"):
                        done = True
            if exited:
                break
            time.sleep(0.2)
        return lines, done

    def on_line(self, line):
        m = re.match(r"BRLOCK-CASE (\S+) (PASS|FAIL) (\d+) ?(.*)", line)
        if m:
            name, verdict, ms, detail = m.groups()
            ok = verdict == "PASS"
            self.results[name] = (ok, detail, int(ms))
            print(f"test linux_client::{name} ... {'ok' if ok else 'FAILED'} ({ms} ms)"
                  + ("" if ok else f"\n    {detail}"), flush=True)
        elif line.startswith("BRLOCK-DMESG"):
            print(f"    guest dmesg: {line[len('BRLOCK-DMESG '):]}", flush=True)
        elif line.startswith("BRLOCK-INFO") or line.startswith("BRLOCK-GUEST"):
            print(f"    {line}", flush=True)

    def tshark_check(self, pcap):
        """The capture decodes with no malformed packet, and holds NLM, NSM? and portmap calls."""
        # The guest's kernel connects from reserved ports (< 1024) that may be another protocol's
        # registered port (862 is TWAMP-Control: tshark then decodes the NLM stream as that and calls
        # it malformed). On TCP everything here is record-marked ONC RPC, so RPC's heuristic goes
        # first. (Not on UDP: there the heuristics take RPC datagrams for RTCP.)
        prefs = ["-o", "tcp.try_heuristic_first:TRUE"]

        def count(filt):
            r = subprocess.run(["tshark", "-n", "-r", pcap, *prefs, "-Y", filt],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise SetupError(f"tshark failed: {r.stderr.strip()[:300]}")
            return len([l for l in r.stdout.splitlines() if l.strip()])
        malformed = count("_ws.malformed")
        nlm = count("nlm")
        portmap = count("portmap")
        detail = f"{nlm} NLM, {portmap} portmap packets, {malformed} malformed"
        ok = malformed == 0 and nlm > 0 and portmap > 0
        return ok, detail


class SetupError(Exception):
    pass


def run(argv):
    subprocess.run(argv, check=True)


def inner(args):
    """Inside the namespace (and a mount namespace of its own): run the suite."""
    workdir = tempfile.mkdtemp(prefix="brlock-linux-client.")
    pg_db = pg_sock = None
    if args.server == "brlockd-ha":
        # The machine's PostgreSQL, through its socket (the namespace has a loopback of its own):
        # bind-mounted before /run is hidden, in this private mount namespace only. The mount point
        # is NOT inside workdir: removing workdir must never walk into the machine's socket
        # directory (it would delete PostgreSQL's socket and pid file).
        pg_sock = tempfile.mkdtemp(prefix="brlock-pgsock.")
        run(["mount", "--bind", PG_SOCKET_DIR, pg_sock])
        pg_db = f"brlock_lc_{os.getpid()}"
        run(["psql", "-h", pg_sock, "-U", "postgres", "-d", "postgres", "-qc", f"CREATE DATABASE {pg_db}"])
        if not args.only:
            args.only = HA_CASES
    # A private /run: rpcbind's socket and lock files, Ganesha's and statd's pid files.
    run(["mount", "-t", "tmpfs", "tmpfs", "/run"])
    suite = Suite(args, workdir)
    if pg_db:
        suite.pg_url = f"postgres://postgres@localhost/{pg_db}?host={pg_sock}"
    expected = subprocess.run([os.path.join(args.guest_dir, "locktest"), "--list"],
                              capture_output=True, text=True, check=True).stdout.split()
    if args.only:
        expected = [c for c in expected if c in args.only.split(",")]
    if args.server == "ganesha":
        # Restarting Ganesha's NLM is not part of the reference: its notices are rpc.statd's job.
        restart = [c for c in expected if "restart" in c or "crash" in c]
        args.skip = ",".join([c for c in args.skip.split(",") if c] + restart)
    if args.skip:
        expected = [c for c in expected if c not in args.skip.split(",")]
    deadline = time.monotonic() + args.timeout
    failed_setup = None
    try:
        suite.network()
        suite.rpcbind()
        pcap = suite.tcpdump()
        if args.server == "ganesha":
            suite.statd()
            export = suite.ganesha(nlm=True)
        elif args.server == "brlock-nfsd":
            export = suite.nfsd()
        elif args.server == "brlockd-ha":
            export = suite.ganesha(nlm=False)
            suite.brlockd_ha()
        else:
            export = suite.ganesha(nlm=False)
            suite.brlockd()
        log(f"servers up ({args.server}); starting the guest")
        t0 = time.monotonic()
        qemu, console, ctl = suite.guest(export)
        lines, done = suite.follow(qemu, console, ctl, deadline)
        log(f"guest ran {time.monotonic() - t0:.1f} s")
        if not done:
            failed_setup = "the guest did not finish (time-out or crash); its console ends:\n" + \
                "\n".join("    " + l for l in lines[-25:])
    except SetupError as e:
        failed_setup = str(e)
    finally:
        suite.procs.stop_all()
        if pg_db:
            subprocess.run(["psql", "-h", pg_sock, "-U", "postgres", "-d", "postgres",
                            "-qc", f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)"])
            # Unmounted, then the empty mount point removed with rmdir (never a tree walk).
            if subprocess.run(["umount", pg_sock]).returncode == 0:
                os.rmdir(pg_sock)

    for name in expected:
        if name not in suite.results:
            suite.results[name] = (False, "not run", 0)
            print(f"test linux_client::{name} ... FAILED (not run)", flush=True)
    if failed_setup is None or os.path.exists(os.path.join(workdir, "tap0.pcap")):
        try:
            ok, detail = suite.tshark_check(os.path.join(workdir, "tap0.pcap"))
        except SetupError as e:
            ok, detail = False, str(e)
        suite.results["nlm_capture_decodes_without_malformed_packets"] = (ok, detail, 0)
        print(f"test linux_client::nlm_capture_decodes_without_malformed_packets ... "
              f"{'ok' if ok else 'FAILED'} ({detail})", flush=True)
    passed = sum(1 for ok, _, _ in suite.results.values() if ok)
    failed = len(suite.results) - passed
    if failed_setup:
        print(f"linux-client: {failed_setup}", flush=True)
    if failed or failed_setup:
        names = ["brlockd", "brlock-nfsd", "ganesha", "rpcbind"] + [f"brlockd-{i}" for i in range(1, suite.ha_started + 1)]
        for name in names:
            tail = suite.procs.log_tail(name, 20)
            if tail:
                print(f"linux-client: last lines of {name}'s log:")
                for l in tail:
                    print(f"    {l}")
        print(f"linux-client: logs and capture kept in {workdir}", flush=True)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 and not failed_setup else 1


def outer(args):
    """Makes the namespace, runs `inner` in it, and always tears it down."""
    if os.geteuid() != 0:
        print("linux-client: needs root (network namespace, TAP device)", file=sys.stderr)
        return 2
    for f in ("vmlinuz", "initramfs.cpio.gz", "locktest"):
        if not os.path.exists(os.path.join(args.guest_dir, f)):
            print(f"linux-client: no guest in {args.guest_dir}; run tests/linux-client/build-guest.sh",
                  file=sys.stderr)
            return 2
    binary = {"brlockd": args.brlockd, "brlock-nfsd": args.nfsd}.get(args.server)
    if binary is not None and not os.access(binary, os.X_OK):
        print(f"linux-client: no {args.server} at {binary}", file=sys.stderr)
        return 2
    ns = f"brlk-lc-{os.getpid()}"
    run(["ip", "netns", "add", ns])
    argv = ["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private",
            sys.executable, os.path.abspath(__file__), "--inner"] + sys.argv[1:]
    child = subprocess.Popen(argv)
    try:
        # The inner run has its own deadline; this one catches a hang in its teardown.
        rc = child.wait(timeout=args.timeout + 90)
    except subprocess.TimeoutExpired:
        print("linux-client: the run did not end in time; stopping it", flush=True)
        stop_process(child, signal.SIGTERM, 10)
        rc = 1
    except (KeyboardInterrupt, SystemExit):
        stop_process(child, signal.SIGTERM, 10)
        rc = 130
    finally:
        # Anything of ours still in the namespace is stopped by PID before it is deleted.
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", ns])
    return rc


def stop_on_sigterm():
    """SIGTERM unwinds like an exception, so every `finally` stops what it started."""
    def raise_exit(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, raise_exit)


def main():
    stop_on_sigterm()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", choices=["brlockd", "brlockd-ha", "brlock-nfsd", "ganesha"], default="brlockd")
    p.add_argument("--brlockd", default=os.path.join(ROOT, "target", "debug", "brlockd"))
    p.add_argument("--nfsd", default=os.path.join(ROOT, "target", "debug", "brlock-nfsd"))
    p.add_argument("--brlockd-arg", action="append", default=[],
                   help="an extra brlockd flag (repeatable), e.g. to break it on purpose")
    p.add_argument("--guest-dir", default=os.path.join(ROOT, "target", "linux-client", "guest"))
    p.add_argument("--only", default="")
    p.add_argument("--skip", default="")
    p.add_argument("--timeout", type=float, default=240.0, help="seconds for the whole guest run")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inner:
        return inner(args)
    return outer(args)


if __name__ == "__main__":
    sys.exit(main())
