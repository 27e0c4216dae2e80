// The shared-memory lane between CarteKit's pcscd driver and the simulator daemon (see
// CarteSimProtocol/SharedLane.swift): the few operations Swift cannot spell on Linux — atomics on a
// word of a shared mapping, a processor pause, memfd_create with seals, and descriptor passing.
#ifndef SIMLANE_H
#define SIMLANE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// Loads the lane word (acquire: what the other side wrote before publishing is visible).
static inline uint32_t simlane_load(const uint32_t *word) { return __atomic_load_n(word, __ATOMIC_ACQUIRE); }

/// Stores the lane word (release: what this side wrote before is published with it).
static inline void simlane_store(uint32_t *word, uint32_t value) { __atomic_store_n(word, value, __ATOMIC_RELEASE); }

/// Compare-and-swap of the lane word (acquire and release); 1 when it held `expected` and now holds `desired`.
static inline int simlane_cas(uint32_t *word, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n(word, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) ? 1 : 0;
}

/// A processor hint inside a polling loop (x86 `pause`, Arm `yield`).
static inline void simlane_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

/// An anonymous shared-memory file of `size` bytes, sealed against shrinking and growing (so a peer that
/// maps it can never fault on a truncated mapping); -1 with errno set on failure. Close-on-exec.
int simlane_memfd(const char *name, size_t size);

/// 1 when `fd` is a sealed lane file of exactly `size` bytes (shrinking and growing refused), else 0.
int simlane_check(int fd, size_t size);

/// Sends `length` bytes with descriptor `fd` attached (SCM_RIGHTS), without SIGPIPE; the bytes sent or -1.
ssize_t simlane_send_fd(int socket, const void *bytes, size_t length, int fd);

/// Receives up to `capacity` bytes and at most one attached descriptor (stored in `*fd`, -1 when none;
/// close-on-exec); the bytes received, 0 at end of stream, or -1. Extra descriptors are closed.
ssize_t simlane_receive_fd(int socket, void *bytes, size_t capacity, int *fd);

#endif
