#ifndef C_EPHEMERAL_PROCESS_H
#define C_EPHEMERAL_PROCESS_H
/* prctl(2) is variadic, which Swift cannot call: this wrapper sets the parent-death signal of the calling process
   (Linux), for the commands ephemeral-broker runs. Elsewhere it does nothing and returns -1. */
#ifdef __linux__
#include <sys/prctl.h>
static inline int eb_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, (unsigned long)signal); }
#else
static inline int eb_set_parent_death_signal(int signal) { (void)signal; return -1; }
#endif
#endif
