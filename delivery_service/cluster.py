"""`examserver cluster --workers N`: N workers behind nginx on loopback, for local use and tests.

The nginx configuration is deploy/nginx.conf with its upstream servers, listen address and file
paths rewritten, so the cluster runs what production runs. SIGHUP rolls the workers one at a time
(each drains: readyz 503, sockets told 1012, in-flight work finished), SIGINT/SIGTERM stops all.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

NGINX_TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "nginx.conf"


class ClusterError(RuntimeError):
    pass


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def render_nginx(template: str, *, listen: int, upstreams: list[int], prefix: Path) -> str:
    """deploy/nginx.conf for loopback: our ports, our files, no root-only paths."""
    servers = "".join(f"        server 127.0.0.1:{p} max_fails=0;\n" for p in upstreams)
    text, found = re.subn(r"(?m)^\s*server worker\d+:8000[^\n]*\n", "", template)
    if not found:
        raise ClusterError("deploy/nginx.conf has no `server workerN:8000` lines to replace")
    text = text.replace("        least_conn;\n", "        least_conn;\n" + servers, 1)
    text = text.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    text = text.replace("access_log /dev/stdout", f"access_log {prefix / 'access.log'}")
    text = text.replace("error_log /dev/stderr warn;", f"error_log {prefix / 'error.log'} warn;")
    temp = "".join(
        f"    {kind}_temp_path {prefix / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {\n", "http {\n" + temp, 1)
    return f"pid {prefix / 'nginx.pid'};\n" + text.replace(
        "worker_processes auto;", "worker_processes 1;"
    )


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ClusterError(f"{url}: the process exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise ClusterError(f"{url} never became ready")


@dataclass
class LocalCluster:
    workers: int
    port: int
    prefix: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    ports: list[int] = field(default_factory=list)
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    nginx: subprocess.Popen[bytes] | None = None
    # What each worker runs, `{port}` replaced: bench.fanout puts another server behind the same
    # nginx to compare with.
    worker: list[str] = field(
        default_factory=lambda: [
            sys.executable,
            "-m",
            "delivery_service",
            "serve",
            "--port",
            "{port}",
        ]
    )

    def start(self) -> None:
        self.ports = [free_port() for _ in range(self.workers)]
        for port in self.ports:
            self._start_worker(port)
        for port in self.ports:
            wait_ready(f"http://127.0.0.1:{port}/readyz", self.processes[port])
        self._start_nginx()
        wait_ready(f"http://127.0.0.1:{self.port}/readyz", self._nginx())

    def _start_worker(self, port: int) -> None:
        log = (self.prefix / f"worker-{port}.log").open("ab")
        self.processes[port] = subprocess.Popen(
            [arg.replace("{port}", str(port)) for arg in self.worker],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()  # the child holds its own descriptor

    def _start_nginx(self) -> None:
        binary = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
        if binary is None:
            raise ClusterError("nginx is not installed (Debian: apt-get install nginx)")
        if not NGINX_TEMPLATE.exists():
            raise ClusterError(f"{NGINX_TEMPLATE} not found: run from a checkout of the project")
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.prefix / kind).mkdir(exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(
            render_nginx(
                NGINX_TEMPLATE.read_text(),
                listen=self.port,
                upstreams=self.ports,
                prefix=self.prefix,
            )
        )
        command = [binary, "-p", str(self.prefix), "-c", str(conf), "-g", "daemon off;"]
        checked = subprocess.run([*command[:-2], "-t"], capture_output=True, text=True, check=False)
        if checked.returncode != 0:
            raise ClusterError(f"nginx refused the configuration:\n{checked.stderr}")
        self.nginx = subprocess.Popen(command, stderr=subprocess.DEVNULL)

    def _nginx(self) -> subprocess.Popen[bytes]:
        if self.nginx is None:
            raise ClusterError("nginx is not running")
        return self.nginx

    def rolling_restart(self) -> None:
        """One worker at a time: drain and stop it, start its replacement on the same port, wait
        until it is ready, then the next. The others carry the candidates meanwhile."""
        for port in self.ports:
            old = self.processes[port]
            old.send_signal(signal.SIGTERM)
            old.wait(timeout=60)
            self._start_worker(port)
            wait_ready(f"http://127.0.0.1:{port}/readyz", self.processes[port])
            print(f"worker on port {port} restarted", flush=True)

    def stop(self) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)  # graceful: finish what it is proxying
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*self.processes.values(), *([self.nginx] if self.nginx else [])]:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def run(workers: int, port: int) -> int:
    from delivery_service.settings import Settings
    from delivery_service.storage.migrate import upgrade

    settings = Settings()
    if settings.redis_url.startswith("memory://"):
        print(
            "examserver cluster: workers must share a Redis: set EXAMSERVER_REDIS_URL",
            file=sys.stderr,
        )
        return 2
    if settings.is_sqlite:
        print(
            "examserver cluster: workers must share PostgreSQL: set EXAMSERVER_DATABASE_URL",
            file=sys.stderr,
        )
        return 2
    upgrade(settings.database_url)  # once, before any worker takes traffic
    prefix = Path(tempfile.mkdtemp(prefix="examserver-cluster-"))
    cluster = LocalCluster(workers=workers, port=port, prefix=prefix)
    pending: list[int] = []

    def on_signal(sig: int, _: FrameType | None) -> None:
        pending.append(sig)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        cluster.start()
        print(
            f"examserver cluster: {workers} workers on ports "
            f"{', '.join(map(str, cluster.ports))} behind nginx at http://127.0.0.1:{port}/\n"
            f"  logs in {prefix}; SIGHUP rolls the workers one by one, Ctrl+C stops everything",
            flush=True,
        )
        while True:
            if not pending:
                time.sleep(0.2)
                if cluster.nginx is not None and cluster.nginx.poll() is not None:
                    raise ClusterError(f"nginx exited with {cluster.nginx.returncode}")
                continue
            received = pending.pop(0)
            if received != signal.SIGHUP:
                return 0
            print("rolling restart started", flush=True)
            cluster.rolling_restart()
            print("rolling restart done", flush=True)
    except ClusterError as exc:
        print(f"examserver cluster: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
