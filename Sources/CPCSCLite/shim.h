#ifndef CARTEKIT_CPCSCLITE_SHIM_H
#define CARTEKIT_CPCSCLITE_SHIM_H
// pcsc-lite client API (libpcsclite). On Linux the headers live in /usr/include/PCSC and are included
// without the PCSC/ prefix (pkg-config adds -I/usr/include/PCSC).
#include <winscard.h>
#include <wintypes.h>
#include <reader.h>
#include <pcsclite.h>
#endif
