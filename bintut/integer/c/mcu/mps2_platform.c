/*
 * Bare-metal start-up and the golden test's platform on QEMU's mps2-an386 (Cortex-M4): a vector
 * table, .data/.bss set-up, console and exit through Arm semihosting (QEMU:
 * -semihosting-config enable=on,target=native) and a counter from the board's CMSDK APB timer 0
 * (25 MHz). Run QEMU with -icount shift=0: virtual time then advances 1 ns per guest instruction, so
 * 40 x timer ticks = instructions executed (to +-40). QEMU does not model cycles.
 */
#include <stddef.h>
#include <stdint.h>

#include "platform.h"

int main(void);
void reset_handler(void);

extern uint32_t _data_start, _data_end, _data_load, _bss_start, _bss_end, _stack_top;

#define SYS_WRITE0 0x04
#define SYS_EXIT_EXTENDED 0x20
#define ADP_STOPPED_APPLICATION_EXIT 0x20026
#define TIMER0 ((volatile uint32_t *)0x40000000) /* CTRL, VALUE, RELOAD */
#define NS_PER_TICK 40                           /* 25 MHz */

static int semihost(int operation, const void *argument)
{
    register int r0 __asm__("r0") = operation;
    register const void *r1 __asm__("r1") = argument;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

const char *const platform_counter_unit = "instructions";

void platform_write(const char *text)
{
    semihost(SYS_WRITE0, text);
}

void platform_exit(int status)
{
    const uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)status};
    semihost(SYS_EXIT_EXTENDED, block);
    for (;;) {
    }
}

uint64_t platform_counter(void)
{
    static uint64_t total;
    static uint32_t last = 0xFFFFFFFFu;
    const uint32_t now = TIMER0[1];
    total += (uint32_t)(last - now); /* counts down; unsigned arithmetic handles the wrap */
    last = now;
    return total * NS_PER_TICK;
}

static void fault(void)
{
    platform_write("bintut: hard fault\n");
    platform_exit(3);
}

/* The compiler may call these even in freestanding code. */
void *memset(void *dst, int value, size_t n)
{
    unsigned char *d = dst;
    while (n--) *d++ = (unsigned char)value;
    return dst;
}

void *memcpy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

void reset_handler(void)
{
    uint32_t *src = &_data_load, *dst = &_data_start;
    while (dst < &_data_end) *dst++ = *src++;
    for (dst = &_bss_start; dst < &_bss_end;) *dst++ = 0;
    TIMER0[2] = 0xFFFFFFFFu; /* RELOAD */
    TIMER0[1] = 0xFFFFFFFFu; /* VALUE */
    TIMER0[0] = 1;           /* CTRL: enable */
    platform_exit(main());
}

__attribute__((section(".vectors"), used)) static const uintptr_t vectors[16] = {
    (uintptr_t)&_stack_top, (uintptr_t)reset_handler, (uintptr_t)fault, (uintptr_t)fault,
    (uintptr_t)fault,       (uintptr_t)fault,         (uintptr_t)fault,
};
