"""Peak resident memory of this process."""
try:
    import resource
except ImportError:  # not on Windows
    resource = None


def peak_rss_mb():
    """This process's peak resident set size in MiB (None where it cannot be read). VmHWM is
    this process image's own peak; ru_maxrss would include the parent's RSS at fork time,
    which Linux carries across exec (a child started by a big test process)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    if resource is not None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return None
