"""Process-memory readings shared by the benchmark scripts (Linux /proc)."""


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process to its current RSS (Linux >= 4.0);
    False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
