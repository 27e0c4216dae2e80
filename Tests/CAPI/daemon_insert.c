/* daemon_insert.c — inserts two card images into the two slots of reader 0 of a `carte sim serve`
 * daemon through libcarte (usage: daemon_insert SOCKET IMAGE0 IMAGE1). */
#include <carte.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: daemon_insert SOCKET IMAGE0 IMAGE1\n"); return 2; }
    for (int slot = 0; slot < 2; slot++) {
        carte_status s = carte_sim_daemon_insert(argv[1], 0, slot, argv[2 + slot]);
        if (s != CARTE_OK) { fprintf(stderr, "slot %d: %s\n", slot, carte_status_name(s)); return 1; }
    }
    return 0;
}
