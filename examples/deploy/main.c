/* The trained XoR network baked into a program: `make deploy`, then
 * `examples/deploy/out/xor 1 0` prints the network's output for (1, 0). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "xor_net.h"

/* The finite number that all of text spells, into *value; 0 if it is
 * anything else (empty, "1x", "nan", "1e99" beyond a float). */
static int read_number(const char *text, float *value)
{
    char *end;
    *value = strtof(text, &end);
    return end != text && *end == '\0' && isfinite(*value);
}

int main(int argc, char **argv)
{
    float x[XOR_NET_INPUTS], y[XOR_NET_OUTPUTS];
    if (argc != XOR_NET_INPUTS + 1) {
        fprintf(stderr, "usage: %s x1 ... x%d\n", argv[0], XOR_NET_INPUTS);
        return 2;
    }
    for (int i = 0; i < XOR_NET_INPUTS; i++) {
        if (!read_number(argv[i + 1], &x[i])) {
            fprintf(stderr, "%s: expected a finite number for x%d. Received: \"%s\"\n",
                    argv[0], i + 1, argv[i + 1]);
            return 2;
        }
    }
    xor_net(x, y);
    for (int k = 0; k < XOR_NET_OUTPUTS; k++)
        printf("%.9g\n", y[k]);
    return 0;
}
