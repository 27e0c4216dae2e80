/*
 * carte.h — the C API of CarteKit (libcarte): read a patient's Carte Vitale and use a health
 * professional's CPx card (CPS, CPE, CPF, CPA) through PC/SC readers or CarteKit's virtual readers.
 *
 * Conventions
 * - Every function returning carte_status returns CARTE_OK (0) on success, a documented code
 *   otherwise (each function lists its codes under "Returns"); carte_last_error() (for a context) or
 *   carte_cpx_last_error() (for a CPx session) then gives an English message.
 * - Handles are opaque and owned by the caller: every *_new / carte_read_* / carte_cpx_open has a
 *   matching *_free. Free functions accept NULL. Handles are ids that are never reused, so a handle
 *   already freed (or never made by this library, or of another type) is always detected: free
 *   functions ignore it, other functions return CARTE_E_INVALID_ARGUMENT.
 * - Strings are UTF-8 and NUL-terminated. Functions that write text take (buf, size, needed): on
 *   success the text and its NUL fit in size bytes; otherwise CARTE_E_BUFFER_TOO_SMALL is returned
 *   and *needed (when not NULL) says how many bytes are needed (NUL included). buf may be NULL to ask
 *   for the size.
 * - No Swift type crosses this boundary. A PIN never appears in a message, a log or JSON, and is sent
 *   to the card once.
 * - Thread safety is stated for each function. "Context-serialised": calls on one context must not
 *   overlap (use one context per thread, or a lock); different contexts may be used concurrently.
 *   "Session-serialised": the same for one carte_cpx. Functions that talk to readers block the
 *   calling thread while CarteKit works on its own threads: call them from ordinary threads, never
 *   from inside a Swift concurrency task.
 *
 * Version: CARTE_API_VERSION below; carte_version() gives the library's version. The exported
 * symbols are listed in carte.symbols and checked by CarteKit's tests: they change only with the
 * API version.
 */
#ifndef CARTE_H
#define CARTE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The API version this header describes. */
#define CARTE_API_VERSION 2

/** Status codes. */
typedef enum carte_status {
    CARTE_OK = 0,
    CARTE_E_INVALID_ARGUMENT = 1,  /**< NULL or unknown handle, NULL pointer, value out of range */
    CARTE_E_BUFFER_TOO_SMALL = 2,  /**< *needed (or *count, *sig_len) says how much is needed; nothing was written but what the function says */
    CARTE_E_NO_READER = 3,         /**< no such reader, or no reader at all */
    CARTE_E_NO_CARD = 4,           /**< no card (of the kind wanted) in the reader(s) */
    CARTE_E_WRONG_CARD = 5,        /**< the card is not of the kind the function needs */
    CARTE_E_TIMEOUT = 6,           /**< nothing happened within the time given */
    CARTE_E_CARD = 7,              /**< reader or card failure: removed, mute, reset, held by another program, pcscd gone */
    CARTE_E_WRONG_PIN = 8,         /**< wrong PIN or PUK; *tries_left says how many tries remain */
    CARTE_E_PIN_BLOCKED = 9,       /**< the PIN (or PUK) is blocked: unblock the PIN with the PUK */
    CARTE_E_PIN_REQUIRED = 10,     /**< the operation needs the PIN verified first */
    CARTE_E_DATA = 11,             /**< the card's data or a card image is malformed */
    CARTE_E_UNSUPPORTED = 12,      /**< not possible with this card, interface or backend */
    CARTE_E_INTERNAL = 13,         /**< a bug in libcarte: please report it */
    CARTE_E_TOKEN_REFUSED = 14,    /**< an appli carte Vitale token was refused: forged, unknown key, for another
                                        software, expired, already used, or for nobody the service knows */
    CARTE_E_PIN_CANCELLED = 15,    /**< the holder pressed cancel on the reader's PIN pad (API 2) */
    CARTE_E_PIN_ENTRY = 16         /**< the PIN typed on the reader's PIN pad was too short or too long, or the
                                        new PIN and its confirmation differed; no try was used (API 2) */
} carte_status;

/** Where readers come from. */
typedef enum carte_backend {
    CARTE_BACKEND_PCSC = 0,       /**< the readers pcscd knows (real, or virtual ones served by `carte sim serve`) */
    CARTE_BACKEND_SIMULATOR = 1   /**< in-process virtual readers: a bi-fente reader and a contactless one, empty (see carte_sim_insert) */
} carte_backend;

/** What a slot holds. */
typedef enum carte_card_kind {
    CARTE_CARD_NONE = 0,
    CARTE_CARD_VITALE1 = 1,
    CARTE_CARD_VITALE2 = 2,
    CARTE_CARD_CPS3 = 3,
    CARTE_CARD_CPS3_CONTACTLESS = 4,
    CARTE_CARD_CPS4 = 5,
    CARTE_CARD_APCV = 6,
    CARTE_CARD_UNKNOWN = 7,
    CARTE_CARD_MUTE = 8           /**< a card that does not answer the reset */
} carte_card_kind;

/** Event types. */
typedef enum carte_event_type {
    CARTE_EVENT_READER_ADDED = 1,
    CARTE_EVENT_READER_REMOVED = 2,
    CARTE_EVENT_CARD_INSERTED = 3,
    CARTE_EVENT_CARD_REMOVED = 4,
    CARTE_EVENT_CARD_MUTE = 5
} carte_event_type;

/** Longest reader name, NUL included (PC/SC's limit). */
#define CARTE_NAME_SIZE 128

/** One slot (in PC/SC every slot is a reader). */
typedef struct carte_reader {
    char name[CARTE_NAME_SIZE];             /**< pass it to the functions taking a reader */
    char physical_reader[CARTE_NAME_SIZE];  /**< same value for the two slots of a bi-fente reader */
    int32_t slot;                           /**< index in the physical reader, from 0 */
    int32_t slot_count;
    int32_t contactless;                    /**< 1 for a contactless slot */
    int32_t card;                           /**< carte_card_kind (CARTE_CARD_NONE when empty), from the ATR */
} carte_reader;

/** One reader or card event. */
typedef struct carte_event {
    int32_t type;                           /**< carte_event_type */
    int32_t card;                           /**< carte_card_kind of an inserted card, else CARTE_CARD_NONE */
    int32_t slot;                           /**< slot index, -1 when unknown */
    char reader[CARTE_NAME_SIZE];
    char physical_reader[CARTE_NAME_SIZE];  /**< empty when unknown */
} carte_event;

/** Fields of a beneficiary (a person on a Carte Vitale). */
typedef enum carte_vitale_field {
    CARTE_VITALE_SURNAME = 0,
    CARTE_VITALE_FIRST_NAME = 1,
    CARTE_VITALE_BIRTH_DATE = 2,    /**< YYYYMMDD as written on the card (lunar dates possible) */
    CARTE_VITALE_NIR = 3,           /**< 15 characters: 13 + key */
    CARTE_VITALE_RIGHTS = 4,        /**< "open", "closed" or "unknown" on the day of the reading */
    CARTE_VITALE_BIRTH_RANK = 5,
    CARTE_VITALE_QUALITY = 6
} carte_vitale_field;

typedef struct carte_context carte_context;  /**< readers, events and the simulator; opaque */
typedef struct carte_vitale carte_vitale;    /**< a Carte Vitale read; immutable; opaque */
typedef struct carte_cpx carte_cpx;          /**< an open session on a CPx card (held exclusively); opaque */

/** The library's version ("0.1.0"). Static storage. Thread-safe. */
const char *carte_version(void);
/** The API version the library implements (CARTE_API_VERSION). Thread-safe. */
int carte_api_version(void);
/** The name of a status ("CARTE_E_WRONG_PIN"); "unknown" for other values. Static storage. Thread-safe. */
const char *carte_status_name(carte_status status);

/** Creates a context over a backend. Thread-safe.
 *  Returns: CARTE_OK; CARTE_E_INVALID_ARGUMENT (out NULL, unknown backend). */
carte_status carte_context_new(carte_backend backend, carte_context **out);
/** Frees a context (NULL and freed handles are ignored). Handles made from it stay valid. Context-serialised. */
void carte_context_free(carte_context *ctx);
/** The message of the context's last failure ("" when none). Context-serialised.
 *  Returns: CARTE_OK; CARTE_E_INVALID_ARGUMENT (ctx not a live context); CARTE_E_BUFFER_TOO_SMALL. */
carte_status carte_last_error(const carte_context *ctx, char *buf, size_t size, size_t *needed);

/** Lists the slots: up to capacity entries into readers; *count gets the number of slots.
 *  Context-serialised.
 *  Returns: CARTE_OK; CARTE_E_BUFFER_TOO_SMALL when capacity < *count (the first capacity entries are
 *  written); CARTE_E_INVALID_ARGUMENT (ctx, count NULL, readers NULL with capacity > 0);
 *  CARTE_E_CARD (pcscd gone or refusing). */
carte_status carte_list_readers(carte_context *ctx, carte_reader *readers, size_t capacity, size_t *count);
/** Waits up to timeout_ms (0: just look) for the next event since the context was created.
 *  Context-serialised.
 *  Returns: CARTE_OK; CARTE_E_TIMEOUT when none came; CARTE_E_INVALID_ARGUMENT (ctx, event NULL,
 *  timeout_ms negative). */
carte_status carte_wait_event(carte_context *ctx, int32_t timeout_ms, carte_event *event);

/** Reads the Carte Vitale in reader (NULL: the first slot holding one), or the appli carte Vitale of a
 *  phone on a contactless slot: the same reading (JSON generation "apcv"). Phones speak CarteKit's
 *  SYNTHETIC apCV protocol (docs/apcv.md) and resolve through the simulated service of the bundled
 *  phones, for the software id "CARTEKIT-DEMO-LGO". Context-serialised.
 *  Returns: CARTE_OK; CARTE_E_NO_READER; CARTE_E_NO_CARD; CARTE_E_WRONG_CARD; CARTE_E_TIMEOUT;
 *  CARTE_E_CARD (also: the holder declined on the phone); CARTE_E_DATA (malformed card data or token);
 *  CARTE_E_TOKEN_REFUSED; CARTE_E_INVALID_ARGUMENT. */
carte_status carte_read_vitale(carte_context *ctx, const char *reader, carte_vitale **out);
/** Reads the appli carte Vitale from the text of its QR code (UTF-8, as a scanner typed it; the
 *  synthetic "APCV1:" format, repaired for Caps Lock and a QWERTY scanner on an AZERTY session).
 *  Context-serialised.
 *  Returns: CARTE_OK; CARTE_E_DATA (not a QR payload or token); CARTE_E_TOKEN_REFUSED; CARTE_E_CARD
 *  (service unreachable); CARTE_E_INVALID_ARGUMENT (ctx, payload, out NULL). */
carte_status carte_read_vitale_qr(carte_context *ctx, const char *payload, carte_vitale **out);
/** Frees a reading (NULL and freed handles are ignored). Thread-safe for distinct handles. */
void carte_vitale_free(carte_vitale *vitale);
/** The reading as the carte.vitale/1 JSON document of CarteKit's docs/json.md (rights evaluated on
 *  the day of the reading). Thread-safe.
 *  Returns: CARTE_OK; CARTE_E_BUFFER_TOO_SMALL; CARTE_E_INVALID_ARGUMENT (vitale not a live reading). */
carte_status carte_vitale_json(const carte_vitale *vitale, char *buf, size_t size, size_t *needed);
/** The number of beneficiaries into *count. Thread-safe.
 *  Returns: CARTE_OK; CARTE_E_INVALID_ARGUMENT (vitale not a live reading, count NULL). */
carte_status carte_vitale_beneficiary_count(const carte_vitale *vitale, size_t *count);
/** One field of beneficiary index (card order); "" when the card does not give it. Thread-safe.
 *  Returns: CARTE_OK; CARTE_E_BUFFER_TOO_SMALL; CARTE_E_INVALID_ARGUMENT (vitale not a live reading,
 *  index not below the count, unknown field). */
carte_status carte_vitale_beneficiary_field(const carte_vitale *vitale, size_t index, carte_vitale_field field,
                                            char *buf, size_t size, size_t *needed);

/** Opens the CPx card in reader (NULL: the first slot holding one), exclusively. Context-serialised.
 *  Returns: CARTE_OK; CARTE_E_NO_READER; CARTE_E_NO_CARD; CARTE_E_WRONG_CARD; CARTE_E_CARD (held by
 *  another program, removed, pcscd gone); CARTE_E_INVALID_ARGUMENT. */
carte_status carte_cpx_open(carte_context *ctx, const char *reader, carte_cpx **out);
/** Releases the card (before returning) and frees the session (NULL and freed handles are ignored).
 *  Thread-safe for distinct handles; must not overlap another call on the same session. */
void carte_cpx_free(carte_cpx *cpx);
/** The message of the session's last failure ("" when none). Session-serialised.
 *  Returns: CARTE_OK; CARTE_E_INVALID_ARGUMENT (cpx not a live session); CARTE_E_BUFFER_TOO_SMALL. */
carte_status carte_cpx_last_error(const carte_cpx *cpx, char *buf, size_t size, size_t *needed);
/** The card, holder, situations (after the PIN) and certificates as the carte.cps/1 JSON document.
 *  The card is read at each call (asking the size then fetching reads it twice). Session-serialised.
 *  Returns: CARTE_OK; CARTE_E_BUFFER_TOO_SMALL (after the reading); CARTE_E_CARD; CARTE_E_DATA;
 *  CARTE_E_WRONG_CARD; CARTE_E_INVALID_ARGUMENT (cpx not a live session). */
carte_status carte_cpx_info_json(carte_cpx *cpx, char *buf, size_t size, size_t *needed);
/** The PIN's tries left and maximum (-1 when the card does not say), without using a try.
 *  tries_left must not be NULL; max_tries may be. Session-serialised.
 *  Returns: CARTE_OK; CARTE_E_CARD; CARTE_E_DATA (an impossible counter); CARTE_E_UNSUPPORTED (no PIN
 *  on this interface); CARTE_E_INVALID_ARGUMENT. */
carte_status carte_cpx_pin_status(carte_cpx *cpx, int32_t *tries_left, int32_t *max_tries);
/** Presents the PIN (4 to 16 ASCII digits, NUL-terminated) once. Never retried. Session-serialised.
 *  Returns: CARTE_OK; CARTE_E_WRONG_PIN (sets *tries_left when not NULL); CARTE_E_PIN_BLOCKED (sets
 *  *tries_left to 0); CARTE_E_INVALID_ARGUMENT (cpx, pin NULL, pin not 4 to 16 digits: nothing sent);
 *  CARTE_E_UNSUPPORTED (no PIN on this interface); CARTE_E_CARD. */
carte_status carte_cpx_verify_pin(carte_cpx *cpx, const char *pin, int32_t *tries_left);
/** Whether the reader holding the card has a PIN pad that can take this card's PIN (PC/SC part 10
 *  FEATURE_VERIFY_PIN_DIRECT): *has_pad is 1 or 0. Session-serialised. (API 2)
 *  Returns: CARTE_OK; CARTE_E_INVALID_ARGUMENT (cpx not a live session, has_pad NULL). */
carte_status carte_cpx_has_pin_pad(carte_cpx *cpx, int *has_pad);
/** Has the holder type the PIN on the reader's PIN pad: the reader builds the VERIFY, so the PIN never
 *  passes through the host or this library. Waits for the keypad (up to 30 s, the reader's timeout).
 *  Never retried. Session-serialised. (API 2)
 *  Returns: CARTE_OK; CARTE_E_WRONG_PIN (sets *tries_left when not NULL); CARTE_E_PIN_BLOCKED (sets
 *  *tries_left to 0); CARTE_E_PIN_CANCELLED; CARTE_E_TIMEOUT (nobody typed in time); CARTE_E_PIN_ENTRY
 *  (too short or too long); CARTE_E_UNSUPPORTED (the reader has no PIN pad, or no PIN on this
 *  interface: use carte_cpx_verify_pin); CARTE_E_CARD; CARTE_E_INVALID_ARGUMENT. */
carte_status carte_cpx_verify_pin_on_pad(carte_cpx *cpx, int32_t *tries_left);
/** Signs data (SHA-256, PKCS#1 v1.5) with the signature key; the PIN must be verified. The signature
 *  (the key's size, 256 bytes for RSA 2048) goes into sig; with a sig too small (or NULL), nothing is
 *  signed and CARTE_E_BUFFER_TOO_SMALL sets *sig_len to the size needed (the certificates are read
 *  to know it). Session-serialised.
 *  Returns: CARTE_OK; CARTE_E_BUFFER_TOO_SMALL; CARTE_E_PIN_REQUIRED; CARTE_E_UNSUPPORTED (no signature
 *  key or certificate); CARTE_E_CARD; CARTE_E_DATA; CARTE_E_INVALID_ARGUMENT (cpx, sig_len NULL, data
 *  NULL with data_len > 0). */
carte_status carte_cpx_sign(carte_cpx *cpx, const uint8_t *data, size_t data_len, uint8_t *sig, size_t sig_size, size_t *sig_len);

/** CARTE_BACKEND_SIMULATOR contexts: inserts a card image into reader. image is a file path or
 *  "bundled:PATH" (a card image built into the library, e.g. "bundled:cps/medecin-liberal.yaml").
 *  Context-serialised.
 *  Returns: CARTE_OK; CARTE_E_DATA (the image cannot be loaded); CARTE_E_NO_READER; CARTE_E_UNSUPPORTED
 *  (a PC/SC context); CARTE_E_INVALID_ARGUMENT (NULL arguments, unknown bundled image). */
carte_status carte_sim_insert(carte_context *ctx, const char *reader, const char *image);
/** CARTE_BACKEND_SIMULATOR contexts: removes the card from reader (nothing happens if it is empty).
 *  Context-serialised.
 *  Returns: CARTE_OK; CARTE_E_NO_READER; CARTE_E_UNSUPPORTED (a PC/SC context); CARTE_E_INVALID_ARGUMENT. */
carte_status carte_sim_remove(carte_context *ctx, const char *reader);
/** Drives a `carte sim serve` daemon (the virtual readers pcscd sees): inserts image into slot
 *  slot_index of reader reader_index, through the daemon's control socket. Thread-safe.
 *  Returns: CARTE_OK; CARTE_E_NO_READER (no daemon on the socket, or no such reader or slot);
 *  CARTE_E_DATA (the daemon cannot load the image); CARTE_E_INVALID_ARGUMENT (NULL arguments,
 *  negative indexes, a request the daemon refuses). */
carte_status carte_sim_daemon_insert(const char *socket_path, int32_t reader_index, int32_t slot_index, const char *image);
/** Drives a `carte sim serve` daemon: removes the card from a slot. Thread-safe.
 *  Returns: CARTE_OK; CARTE_E_NO_READER (no daemon, or no such reader or slot); CARTE_E_INVALID_ARGUMENT. */
carte_status carte_sim_daemon_remove(const char *socket_path, int32_t reader_index, int32_t slot_index);

#ifdef __cplusplus
}
#endif

#endif /* CARTE_H */
