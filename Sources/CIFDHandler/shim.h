#ifndef CARTEKIT_CIFDHANDLER_SHIM_H
#define CARTEKIT_CIFDHANDLER_SHIM_H
// The pcsc-lite IFD handler (driver) API. No link line: a driver must not link libpcsclite.
// The driver target adds -I/usr/include/PCSC because ifdhandler.h includes <pcsclite.h>.
#include <ifdhandler.h>
#include <reader.h>
#endif
