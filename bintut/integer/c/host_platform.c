/* The golden test's platform on a hosted C implementation: stdio and CPU time. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "platform.h"

const char *const platform_counter_unit = "us";

void platform_write(const char *text)
{
    fputs(text, stdout);
    fflush(stdout);
}

uint64_t platform_counter(void)
{
    return (uint64_t)((double)clock() * 1e6 / CLOCKS_PER_SEC);
}

void platform_exit(int status)
{
    exit(status);
}
