#!/usr/bin/python3
"""A umockdev USB testbed for tests: fake USB devices that programs started under it see through
libudev and sysfs (pcscd's hotplug, libusb's enumeration), plugged and unplugged on request.

Usage: usb-testbed.py DEVICES.umockdev
Prints the testbed directory on the first line of standard output; run programs with
UMOCKDEV_DIR=<that directory> and LD_PRELOAD=libumockdev-preload.so.0. Then reads commands on
standard input, one per line, and answers "ok" or "error: ..." on standard output:
  unplug SYSPATH   send a "remove" uevent for the device and its children, then remove them
  plug SYSPATH     add the device (and its children) back from the description, send "add" uevents
  quit             remove the testbed and exit (also at end of input)
SYSPATH is a device's P: line in the description (/devices/...).
"""
import os
import shutil
import sys

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402


def blocks(text):
    """The description's devices, as (syspath, block text), in order."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = [l for l in block.splitlines() if l.strip()]
        if lines and lines[0].startswith("P: "):
            out.append((lines[0][3:].strip(), "\n".join(lines) + "\n"))
    return out


def main():
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        devices = blocks(f.read())
    testbed = UMockdev.Testbed.new()
    for _, block in devices:
        testbed.add_from_string(block)
    root = testbed.get_root_dir()
    print(root, flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        command, argument = words[0], (words[1] if len(words) > 1 else "")
        family = [(p, b) for p, b in devices if p == argument or p.startswith(argument + "/")]
        try:
            if command == "quit":
                break
            elif command == "unplug" and family:
                for path, _ in reversed(family):
                    testbed.uevent("/sys" + path, "remove")
                for path, _ in reversed(family):
                    testbed.remove_device("/sys" + path)
            elif command == "plug" and family:
                for path, block in family:
                    testbed.add_from_string(block)
                for path, _ in family:
                    testbed.uevent("/sys" + path, "add")
            else:
                print("error: unknown command or device: " + line.strip(), flush=True)
                continue
            print("ok", flush=True)
        except Exception as e:  # answer, do not die: the test reads the answer
            print("error: %s" % e, flush=True)
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
