/* cli/main.c - the ossb entry point (placeholder during bootstrap). */
#include "config.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
        if (argc > 1 && strcmp(argv[1], "version") == 0) {
                printf("ossb %s\n", OSSB_VERSION);
                return 0;
        }
        fprintf(stderr, "usage: ossb version\n");
        return 2;
}
