"""``serve`` caps glibc's malloc arenas (issue 15: the controller's memory under 100 rollouts)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from shipwarden.entrypoints.memory import bound_malloc_arenas


def test_environment_setting_wins(monkeypatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert bound_malloc_arenas() is False


def test_threads_share_two_arenas() -> None:
    """Eight threads allocating at once map at most two arenas once the cap is set (glibc)."""
    assert _arenas(cap=True) <= 2
    assert _arenas(cap=False) > 2  # the measurement can see the difference


def _arenas(*, cap: bool) -> int:
    code = f"CAP = {cap}\n" + textwrap.dedent(
        """
        import os, re, threading
        os.environ.pop("MALLOC_ARENA_MAX", None)
        from shipwarden.entrypoints.memory import bound_malloc_arenas
        if CAP:
            assert bound_malloc_arenas()
        import ctypes
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        libc.fdopen.restype = ctypes.c_void_p
        libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
        libc.fflush.argtypes = [ctypes.c_void_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        def work():
            for _ in range(2000):
                p = libc.malloc(64 * 1024)
                libc.free(p)
                bytes(50_000)
        ts = [threading.Thread(target=work) for _ in range(8)]
        [t.start() for t in ts]; [t.join() for t in ts]
        # glibc's malloc_info lists one <heap nr=...> per arena
        import tempfile
        with tempfile.TemporaryFile() as f:
            fp = libc.fdopen(os.dup(f.fileno()), b"w")
            libc.malloc_info(0, fp); libc.fflush(fp); libc.fclose(fp)
            f.seek(0)
            print(len(re.findall(rb"<heap nr=", f.read())))
        """
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())
