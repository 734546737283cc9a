/* What the golden test needs from the machine it runs on: a console and a counter. */
#ifndef BINTUT_PLATFORM_H
#define BINTUT_PLATFORM_H

#include <stdint.h>

void platform_write(const char *text);        /* write text to the console */
uint64_t platform_counter(void);              /* a monotonic counter, see platform_counter_unit */
extern const char *const platform_counter_unit; /* e.g. "us" (host CPU time), "instructions" (QEMU) */
void platform_exit(int status);               /* end the program with this exit status */

#endif
