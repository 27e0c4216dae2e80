/* A do-nothing pcscd driver: the reference `carte bench pcsc` measures CarteKit's driver against.
   Everything pcscd asks is answered at once from constants, so a round trip through it is the
   cost of pcscd and libpcsclite alone (pcscd's floor). Not a simulator: it knows no command. */
#include <string.h>
#include <ifdhandler.h>
#include "ifdnull.h"

static const UCHAR atr[] = { 0x3B, 0x80, 0x80, 0x01, 0x01 };

RESPONSECODE IFDHCreateChannelByName(DWORD Lun, LPSTR DeviceName) { (void)Lun; (void)DeviceName; return IFD_SUCCESS; }
RESPONSECODE IFDHCreateChannel(DWORD Lun, DWORD Channel) { (void)Lun; (void)Channel; return IFD_SUCCESS; }
RESPONSECODE IFDHCloseChannel(DWORD Lun) { (void)Lun; return IFD_SUCCESS; }

RESPONSECODE IFDHGetCapabilities(DWORD Lun, DWORD Tag, PDWORD Length, PUCHAR Value) {
    (void)Lun;
    if (Length == NULL || Value == NULL) return IFD_ERROR_TAG;
    switch (Tag) {
    case TAG_IFD_ATR:
        if (*Length < sizeof atr) return IFD_ERROR_INSUFFICIENT_BUFFER;
        memcpy(Value, atr, sizeof atr);
        *Length = sizeof atr;
        return IFD_SUCCESS;
    case TAG_IFD_SLOTS_NUMBER:
    case TAG_IFD_SIMULTANEOUS_ACCESS:
    case TAG_IFD_THREAD_SAFE:
    case TAG_IFD_SLOT_THREAD_SAFE:
        if (*Length < 1) return IFD_ERROR_INSUFFICIENT_BUFFER;
        Value[0] = 1;
        *Length = 1;
        return IFD_SUCCESS;
    default:
        return IFD_ERROR_TAG;
    }
}

RESPONSECODE IFDHSetCapabilities(DWORD Lun, DWORD Tag, DWORD Length, PUCHAR Value) {
    (void)Lun; (void)Tag; (void)Length; (void)Value;
    return IFD_ERROR_TAG;
}

RESPONSECODE IFDHSetProtocolParameters(DWORD Lun, DWORD Protocol, UCHAR Flags, UCHAR PTS1, UCHAR PTS2, UCHAR PTS3) {
    (void)Lun; (void)Protocol; (void)Flags; (void)PTS1; (void)PTS2; (void)PTS3;
    return IFD_SUCCESS;
}

RESPONSECODE IFDHPowerICC(DWORD Lun, DWORD Action, PUCHAR Atr, PDWORD AtrLength) {
    (void)Lun;
    if (Action == IFD_POWER_DOWN) { if (AtrLength) *AtrLength = 0; return IFD_SUCCESS; }
    if (Atr == NULL || AtrLength == NULL) return IFD_ERROR_POWER_ACTION;
    memcpy(Atr, atr, sizeof atr);
    *AtrLength = sizeof atr;
    return IFD_SUCCESS;
}

RESPONSECODE IFDHTransmitToICC(DWORD Lun, SCARD_IO_HEADER SendPci, PUCHAR TxBuffer, DWORD TxLength,
                               PUCHAR RxBuffer, PDWORD RxLength, PSCARD_IO_HEADER RecvPci) {
    (void)Lun; (void)SendPci; (void)TxBuffer; (void)TxLength; (void)RecvPci;
    if (RxBuffer == NULL || RxLength == NULL || *RxLength < 2) return IFD_ERROR_INSUFFICIENT_BUFFER;
    RxBuffer[0] = 0x90;
    RxBuffer[1] = 0x00;
    *RxLength = 2;
    return IFD_SUCCESS;
}

RESPONSECODE IFDHControl(DWORD Lun, DWORD dwControlCode, PUCHAR TxBuffer, DWORD TxLength,
                         PUCHAR RxBuffer, DWORD RxLength, LPDWORD pdwBytesReturned) {
    (void)Lun; (void)dwControlCode; (void)TxBuffer; (void)TxLength; (void)RxBuffer; (void)RxLength;
    if (pdwBytesReturned) *pdwBytesReturned = 0;
    return IFD_ERROR_NOT_SUPPORTED;
}

RESPONSECODE IFDHICCPresence(DWORD Lun) { (void)Lun; return IFD_ICC_PRESENT; }
