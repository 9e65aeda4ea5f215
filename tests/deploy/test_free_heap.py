"""``release_free_heap`` (what ``launch.execute`` calls after each run) hands the heap a process
freed back to the operating system."""

import subprocess
import sys

# In a fresh interpreter (its own heap): 192 MiB in 64 KiB blocks (below glibc's mmap
# threshold, so they come from the heap), every other one freed (96 MiB free between live
# blocks: free() trims only the top of the heap), and the resident set read before and after
# release_free_heap().
PROBE = """
import ctypes, ctypes.util
from medvid_assets.orchestration.launch import release_free_heap
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 // 2**20
blocks = [libc.malloc(64 * 1024) for _ in range(3072)]
for block in blocks:
    ctypes.memset(block, 1, 64 * 1024)
for block in blocks[::2]:
    libc.free(block)
before = rss()
print(release_free_heap(), before - rss())
"""


def test_release_free_heap_returns_the_freed_heap_to_the_os() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    trimmed, returned_mib = done.stdout.split()
    assert trimmed == "True"
    assert int(returned_mib) >= 80
