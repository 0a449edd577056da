//! The allocator, and handing memory back after large one-off work.

/// mimalloc rather than the system allocator, for every binary linking the broker (the
/// server, the benchmark's ideal handler, the tests): the exchange path makes many small,
/// short-lived allocations, and glibc kept the memory freed after loading a large policy
/// set instead of returning it. Numbers in BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Returns memory freed by one-off work (parsing and storing a large policy set) to the
/// operating system now. mimalloc purges freed pages after a delay, and only when the thread
/// that freed them allocates again; the thread that loaded the policies then sits idle, and
/// loading 10,000 policies left 79 MB resident, 52 MB after this call.
#[allow(unsafe_code)]
pub fn release_freed_memory() {
    // SAFETY: `mi_collect` has no preconditions: it walks mimalloc's own heaps and may be
    // called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// `mi_option_purge_delay` of mimalloc.h, which libmimalloc-sys does not export. Its place in
/// the option enum is the same from mimalloc 2.1 through 3.x.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// mimalloc 3's own default for that option (options.c; the header's comment still says 10),
/// checked before it is changed: any other value there means the index is not the option it
/// should be (or another mimalloc), and nothing is changed.
const DEFAULT_PURGE_DELAY_MS: std::ffi::c_long = 1000;

/// Freed pages go back to the operating system at once rather than after mimalloc's 1 s
/// delay, which only ends when the freeing thread next allocates: under the benchmark's peak
/// with 10,000 policies, the delay kept several MB of freed pages resident. An operator's
/// `MIMALLOC_PURGE_DELAY` wins.
#[allow(unsafe_code)]
pub fn purge_freed_memory_promptly() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: reading and setting a mimalloc option has no preconditions; options are plain
    // values mimalloc reads on use.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == DEFAULT_PURGE_DELAY_MS {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    /// If an update of mimalloc moved the option, this fails and the index needs a look (at
    /// run time the default check above keeps a moved index from changing anything). No
    /// unit test starts a broker, so the option still holds its default here.
    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_option_is_where_it_is_expected() {
        // SAFETY: as above.
        let (version, delay) = unsafe {
            (
                libmimalloc_sys::mi_version(),
                libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY),
            )
        };
        assert_eq!(
            delay,
            super::DEFAULT_PURGE_DELAY_MS,
            "mimalloc {version}: option {} is not the purge delay",
            super::MI_OPTION_PURGE_DELAY
        );
    }
}
