/* Counts heap allocations made without the GIL, for test_network_memory.py (loaded with
 * LD_PRELOAD into a child interpreter). The core's calls release the GIL around their C++ work,
 * and OpenMP's worker threads never hold it, so an allocation without the GIL is one the core
 * (or a library it calls) made; the interpreter and pybind11 allocate with the GIL held.
 * Every allocator entry point of glibc forwards to its __libc_ twin. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

extern void* __libc_malloc(size_t size);
extern void* __libc_calloc(size_t count, size_t size);
extern void* __libc_realloc(void* pointer, size_t size);
extern void* __libc_memalign(size_t alignment, size_t size);
extern int PyGILState_Check(void) __attribute__((weak));

static volatile int counting = 0;
static int64_t allocations = 0;

static void count(void) {
  if (counting && PyGILState_Check != NULL && !PyGILState_Check()) {
    __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
  }
}

void gw_start_counting(void) {
  __atomic_store_n(&allocations, 0, __ATOMIC_RELAXED);
  counting = 1;
}

int64_t gw_stop_counting(void) {
  counting = 0;
  return __atomic_load_n(&allocations, __ATOMIC_RELAXED);
}

void* malloc(size_t size) {
  count();
  return __libc_malloc(size);
}

void* calloc(size_t count_, size_t size) {
  count();
  return __libc_calloc(count_, size);
}

void* realloc(void* pointer, size_t size) {
  count();
  return __libc_realloc(pointer, size);
}

void* memalign(size_t alignment, size_t size) {
  count();
  return __libc_memalign(alignment, size);
}

void* aligned_alloc(size_t alignment, size_t size) {
  count();
  return __libc_memalign(alignment, size);
}

int posix_memalign(void** out, size_t alignment, size_t size) {
  count();
  if (alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0) return EINVAL;
  void* pointer = __libc_memalign(alignment, size);
  if (pointer == NULL && size != 0) return ENOMEM;
  *out = pointer;
  return 0;
}
