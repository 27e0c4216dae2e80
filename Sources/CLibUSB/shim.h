#ifndef CARTEKIT_CLIBUSB_SHIM_H
#define CARTEKIT_CLIBUSB_SHIM_H
// libusb-1.0 (libusb-1.0-0-dev); pkg-config adds -I/usr/include/libusb-1.0.
#include <libusb.h>
#endif
