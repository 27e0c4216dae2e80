// The parts of libcarte that need no Swift: version and status names (static storage).
#include "carte.h"

const char *carte_version(void) { return "0.1.0"; }

int carte_api_version(void) { return CARTE_API_VERSION; }

const char *carte_status_name(carte_status status) {
    switch (status) {
    case CARTE_OK: return "CARTE_OK";
    case CARTE_E_INVALID_ARGUMENT: return "CARTE_E_INVALID_ARGUMENT";
    case CARTE_E_BUFFER_TOO_SMALL: return "CARTE_E_BUFFER_TOO_SMALL";
    case CARTE_E_NO_READER: return "CARTE_E_NO_READER";
    case CARTE_E_NO_CARD: return "CARTE_E_NO_CARD";
    case CARTE_E_WRONG_CARD: return "CARTE_E_WRONG_CARD";
    case CARTE_E_TIMEOUT: return "CARTE_E_TIMEOUT";
    case CARTE_E_CARD: return "CARTE_E_CARD";
    case CARTE_E_WRONG_PIN: return "CARTE_E_WRONG_PIN";
    case CARTE_E_PIN_BLOCKED: return "CARTE_E_PIN_BLOCKED";
    case CARTE_E_PIN_REQUIRED: return "CARTE_E_PIN_REQUIRED";
    case CARTE_E_DATA: return "CARTE_E_DATA";
    case CARTE_E_UNSUPPORTED: return "CARTE_E_UNSUPPORTED";
    case CARTE_E_INTERNAL: return "CARTE_E_INTERNAL";
    case CARTE_E_TOKEN_REFUSED: return "CARTE_E_TOKEN_REFUSED";
    case CARTE_E_PIN_CANCELLED: return "CARTE_E_PIN_CANCELLED";
    case CARTE_E_PIN_ENTRY: return "CARTE_E_PIN_ENTRY";
    }
    return "unknown";
}
