#ifndef CARTEKIT_IFDNULL_H
#define CARTEKIT_IFDNULL_H
/* libifdnull.so: a do-nothing pcscd driver used by `carte bench pcsc` as pcscd's floor.
   One slot, always a card (ATR 3B 80 80 01 01), every APDU answered 90 00 at once.
   It exports the IFD handler API only; nothing here is meant to be called from Swift. */
#endif
