// Build: cc -O2 -shared -fPIC -o libmalloccount.so scripts/malloccount.c; run with LD_PRELOAD=$PWD/libmalloccount.so.
// python/tests/overhead_breakdown.py then reports heap allocations per run() (issue 15: none on the hot path).
// LD_PRELOAD shim: counts malloc/calloc/realloc/posix_memalign calls (for "nothing is allocated on the hot path").
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdatomic.h>
static atomic_long n;
extern void *__libc_malloc(size_t), *__libc_calloc(size_t, size_t), *__libc_realloc(void *, size_t);
extern int __posix_memalign(void **, size_t, size_t);
void *malloc(size_t s) { atomic_fetch_add_explicit(&n, 1, memory_order_relaxed); return __libc_malloc(s); }
void *calloc(size_t a, size_t b) { atomic_fetch_add_explicit(&n, 1, memory_order_relaxed); return __libc_calloc(a, b); }
void *realloc(void *p, size_t s) { atomic_fetch_add_explicit(&n, 1, memory_order_relaxed); return __libc_realloc(p, s); }
long malloc_count(void) { return atomic_load(&n); }
extern void *__libc_memalign(size_t, size_t);
int posix_memalign(void **p, size_t a, size_t s) { atomic_fetch_add_explicit(&n, 1, memory_order_relaxed); void *r = __libc_memalign(a, s); if (!r) return 12; *p = r; return 0; }
void *aligned_alloc(size_t a, size_t s) { atomic_fetch_add_explicit(&n, 1, memory_order_relaxed); return __libc_memalign(a, s); }
