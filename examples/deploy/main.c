/* The trained XoR network baked into a program: `make deploy`, then
 * `examples/deploy/out/xor 1 0` prints the network's output for (1, 0). */
#include <stdio.h>
#include <stdlib.h>

#include "xor_net.h"

int main(int argc, char **argv)
{
    float x[XOR_NET_INPUTS], y[XOR_NET_OUTPUTS];
    if (argc != XOR_NET_INPUTS + 1) {
        fprintf(stderr, "usage: %s x1 ... x%d\n", argv[0], XOR_NET_INPUTS);
        return 2;
    }
    for (int i = 0; i < XOR_NET_INPUTS; i++)
        x[i] = strtof(argv[i + 1], NULL);
    xor_net(x, y);
    for (int k = 0; k < XOR_NET_OUTPUTS; k++)
        printf("%.9g\n", y[k]);
    return 0;
}
