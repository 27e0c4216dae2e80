/* misuse.c — libcarte used wrongly on purpose: every call must return its documented status, never
 * crash. Built and run (also under valgrind) by CarteKit's tests. Exit status: the number of failures. */
#include <carte.h>
#include <stdio.h>
#include <string.h>

static int failures;
#define EXPECT(call, status) do { carte_status got_ = (call); if (got_ != (status)) { \
    fprintf(stderr, "FAIL line %d: %s -> %s, expected %s\n", __LINE__, #call, carte_status_name(got_), carte_status_name(status)); failures++; } } while (0)
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "FAIL line %d: %s\n", __LINE__, #cond); failures++; } } while (0)

int main(int argc, char **argv) {
    char buf[4096];
    size_t needed = 0, count = 0;
    int32_t tries = -7, max = -7;
    carte_reader readers[4];
    carte_event event;

    CHECK(strcmp(carte_version(), "0.1.0") == 0);
    CHECK(carte_api_version() == CARTE_API_VERSION);
    CHECK(strcmp(carte_status_name(CARTE_E_WRONG_PIN), "CARTE_E_WRONG_PIN") == 0);
    CHECK(strcmp(carte_status_name((carte_status)999), "unknown") == 0);

    /* NULL everywhere. */
    EXPECT(carte_context_new(CARTE_BACKEND_SIMULATOR, NULL), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_list_readers(NULL, readers, 4, &count), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_wait_event(NULL, 0, &event), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_read_vitale(NULL, NULL, NULL), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_vitale_json(NULL, buf, sizeof buf, &needed), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_cpx_verify_pin(NULL, "1234", &tries), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_cpx_sign(NULL, (const uint8_t *)"x", 1, NULL, 0, &needed), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_last_error(NULL, buf, sizeof buf, &needed), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_cpx_open(NULL, NULL, NULL), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_cpx_info_json(NULL, buf, sizeof buf, &needed), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_cpx_pin_status(NULL, &tries, &max), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_cpx_last_error(NULL, buf, sizeof buf, &needed), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_vitale_beneficiary_count(NULL, &count), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_vitale_beneficiary_field(NULL, 0, CARTE_VITALE_NIR, buf, sizeof buf, &needed), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_sim_insert(NULL, "x", "bundled:vitale/twins.yaml"), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_sim_remove(NULL, "x"), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_sim_daemon_remove(NULL, 0, 0), CARTE_E_INVALID_ARGUMENT);
    carte_context_free(NULL);
    carte_vitale_free(NULL);
    carte_cpx_free(NULL);

    /* A bad backend value. */
    carte_context *ctx = (carte_context *)0x1;
    EXPECT(carte_context_new((carte_backend)42, &ctx), CARTE_E_INVALID_ARGUMENT);
    CHECK(ctx == NULL);

    EXPECT(carte_context_new(CARTE_BACKEND_SIMULATOR, &ctx), CARTE_OK);
    /* Too small: the count is still given. */
    EXPECT(carte_list_readers(ctx, readers, 1, &count), CARTE_E_BUFFER_TOO_SMALL);
    CHECK(count == 3);
    EXPECT(carte_list_readers(ctx, NULL, 4, &count), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_list_readers(ctx, readers, 4, &count), CARTE_OK);
    CHECK(readers[0].card == CARTE_CARD_NONE && readers[1].slot == 1 && readers[2].contactless == 1);
    CHECK(strcmp(readers[0].physical_reader, readers[1].physical_reader) == 0);
    EXPECT(carte_wait_event(ctx, -1, &event), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_wait_event(ctx, 10, &event), CARTE_E_TIMEOUT);

    /* No card yet. */
    carte_vitale *v = NULL;
    EXPECT(carte_read_vitale(ctx, NULL, &v), CARTE_E_NO_CARD);
    CHECK(v == NULL);
    EXPECT(carte_last_error(ctx, NULL, 0, &needed), CARTE_E_BUFFER_TOO_SMALL);
    CHECK(needed > 1);
    EXPECT(carte_read_vitale(ctx, "No Such Reader", &v), CARTE_E_NO_READER);

    /* Bad images and readers for the simulator. */
    EXPECT(carte_sim_insert(ctx, readers[0].name, "bundled:nope.yaml"), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_sim_insert(ctx, readers[0].name, "/nonexistent/card.yaml"), CARTE_E_DATA);
    EXPECT(carte_sim_insert(ctx, "No Such Reader", "bundled:vitale/twins.yaml"), CARTE_E_NO_READER);
    EXPECT(carte_sim_insert(ctx, readers[0].name, "bundled:vitale/twins.yaml"), CARTE_OK);
    EXPECT(carte_sim_insert(ctx, readers[1].name, "bundled:cps/medecin-liberal.yaml"), CARTE_OK);
    EXPECT(carte_wait_event(ctx, 2000, &event), CARTE_OK);
    CHECK(event.type == CARTE_EVENT_CARD_INSERTED && event.card == CARTE_CARD_VITALE2 && event.slot == 0);
    EXPECT(carte_wait_event(ctx, 2000, &event), CARTE_OK);
    CHECK(event.type == CARTE_EVENT_CARD_INSERTED && event.card == CARTE_CARD_CPS3 && event.slot == 1);

    /* The wrong kind of card. */
    carte_cpx *cpx = NULL;
    EXPECT(carte_cpx_open(ctx, readers[0].name, &cpx), CARTE_E_WRONG_CARD);
    EXPECT(carte_read_vitale(ctx, readers[1].name, &v), CARTE_E_WRONG_CARD);

    /* Buffers too small, then the struct walk out of range. */
    EXPECT(carte_read_vitale(ctx, NULL, &v), CARTE_OK);
    EXPECT(carte_vitale_json(v, buf, 4, &needed), CARTE_E_BUFFER_TOO_SMALL);
    CHECK(needed > 100);
    EXPECT(carte_vitale_json(v, buf, sizeof buf, NULL), CARTE_OK);
    CHECK(strstr(buf, "\"schema\" : \"carte.vitale/1\"") != NULL);
    EXPECT(carte_vitale_beneficiary_count(v, &count), CARTE_OK);
    CHECK(count == 3);
    EXPECT(carte_vitale_beneficiary_field(v, 3, CARTE_VITALE_NIR, buf, sizeof buf, &needed), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_vitale_beneficiary_field(v, 0, (carte_vitale_field)77, buf, sizeof buf, &needed), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_vitale_beneficiary_field(v, 0, CARTE_VITALE_NIR, buf, 15, &needed), CARTE_E_BUFFER_TOO_SMALL);
    CHECK(needed == 16);
    EXPECT(carte_vitale_beneficiary_field(v, 0, CARTE_VITALE_NIR, buf, 16, &needed), CARTE_OK);
    CHECK(strlen(buf) == 15);

    /* Double free and use after free are caught. */
    carte_vitale_free(v);
    carte_vitale_free(v);
    EXPECT(carte_vitale_json(v, buf, sizeof buf, &needed), CARTE_E_INVALID_ARGUMENT);
    /* A handle of another kind is refused. */
    EXPECT(carte_vitale_json((const carte_vitale *)ctx, buf, sizeof buf, &needed), CARTE_E_INVALID_ARGUMENT);

    /* PIN misuse: bad format (nothing sent), wrong PIN (tries left), signature buffer too small (nothing signed). */
    EXPECT(carte_cpx_open(ctx, NULL, &cpx), CARTE_OK);
    EXPECT(carte_cpx_verify_pin(cpx, NULL, &tries), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_cpx_verify_pin(cpx, "12a4", &tries), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_cpx_pin_status(cpx, &tries, &max), CARTE_OK);
    CHECK(tries == 3 && max == 3);
    uint8_t sig[256];
    size_t sig_len = 0;
    EXPECT(carte_cpx_sign(cpx, (const uint8_t *)"doc", 3, sig, sizeof sig, &sig_len), CARTE_E_PIN_REQUIRED);
    EXPECT(carte_cpx_verify_pin(cpx, "9999", &tries), CARTE_E_WRONG_PIN);
    CHECK(tries == 2);
    /* The session's message says what happened, never the PIN. */
    EXPECT(carte_cpx_last_error(cpx, buf, sizeof buf, &needed), CARTE_OK);
    CHECK(strstr(buf, "2") != NULL && strstr(buf, "9999") == NULL);
    /* The in-process bi-fente has no PIN pad: the pad call says so and sends nothing. */
    int has_pad = -1;
    EXPECT(carte_cpx_has_pin_pad(cpx, &has_pad), CARTE_OK);
    CHECK(has_pad == 0);
    EXPECT(carte_cpx_has_pin_pad(cpx, NULL), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_cpx_has_pin_pad(NULL, &has_pad), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_cpx_verify_pin_on_pad(cpx, &tries), CARTE_E_UNSUPPORTED);
    EXPECT(carte_cpx_verify_pin_on_pad(NULL, &tries), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_cpx_pin_status(cpx, &tries, &max), CARTE_OK);
    CHECK(tries == 2);
    EXPECT(carte_cpx_verify_pin(cpx, "1234", &tries), CARTE_OK);
    EXPECT(carte_cpx_sign(cpx, (const uint8_t *)"doc", 3, sig, 10, &sig_len), CARTE_E_BUFFER_TOO_SMALL);
    CHECK(sig_len == 256);
    sig_len = 0;
    EXPECT(carte_cpx_sign(cpx, (const uint8_t *)"doc", 3, NULL, 0, &sig_len), CARTE_E_BUFFER_TOO_SMALL);
    CHECK(sig_len == 256);
    EXPECT(carte_cpx_sign(cpx, (const uint8_t *)"doc", 3, sig, sizeof sig, &sig_len), CARTE_OK);
    EXPECT(carte_cpx_sign(cpx, NULL, 3, sig, sizeof sig, &sig_len), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_cpx_info_json(cpx, NULL, 0, &needed), CARTE_E_BUFFER_TOO_SMALL);
    CHECK(needed > 1000);
    /* The card is held exclusively while the session is open. */
    carte_cpx *second = NULL;
    EXPECT(carte_cpx_open(ctx, NULL, &second), CARTE_E_CARD);
    carte_cpx_free(cpx);
    carte_cpx_free(cpx);
    EXPECT(carte_cpx_pin_status(cpx, &tries, &max), CARTE_E_INVALID_ARGUMENT);

    /* A freed handle stays invalid: a new session never gets the old handle back. */
    carte_cpx *stale = cpx;
    EXPECT(carte_cpx_open(ctx, NULL, &cpx), CARTE_OK);
    CHECK(cpx != stale);
    EXPECT(carte_cpx_pin_status(stale, &tries, &max), CARTE_E_INVALID_ARGUMENT);
    carte_cpx_free(cpx);

    /* Removal (and its event), then a blocked PIN. */
    while (carte_wait_event(ctx, 0, &event) == CARTE_OK) {}
    EXPECT(carte_sim_remove(ctx, readers[1].name), CARTE_OK);
    EXPECT(carte_wait_event(ctx, 2000, &event), CARTE_OK);
    CHECK(event.type == CARTE_EVENT_CARD_REMOVED && event.slot == 1);
    EXPECT(carte_cpx_open(ctx, NULL, &cpx), CARTE_E_NO_CARD);
    EXPECT(carte_sim_insert(ctx, readers[1].name, "bundled:cps/pin-bloque.yaml"), CARTE_OK);
    EXPECT(carte_cpx_open(ctx, NULL, &cpx), CARTE_OK);
    tries = 5;
    EXPECT(carte_cpx_verify_pin(cpx, "1234", &tries), CARTE_E_PIN_BLOCKED);
    CHECK(tries == 0);
    EXPECT(carte_cpx_last_error(cpx, buf, sizeof buf, &needed), CARTE_OK);
    CHECK(strstr(buf, "PUK") != NULL && strstr(buf, "1234") == NULL);
    carte_cpx_free(cpx);

    /* A CPS4 (the ChipDoc applet on logical channel 1) works through the same calls: PIN status by
     * VERIFY without data, the signature by MSE 91 + PSO CDS of the SHA-256 digest (#34). */
    EXPECT(carte_sim_insert(ctx, readers[1].name, "bundled:cps/cps4-medecin.yaml"), CARTE_OK);
    EXPECT(carte_cpx_open(ctx, NULL, &cpx), CARTE_OK);
    EXPECT(carte_cpx_pin_status(cpx, &tries, &max), CARTE_OK);
    CHECK(tries == 3);
    EXPECT(carte_cpx_sign(cpx, (const uint8_t *)"doc", 3, sig, sizeof sig, &sig_len), CARTE_E_PIN_REQUIRED);
    EXPECT(carte_cpx_verify_pin(cpx, "9999", &tries), CARTE_E_WRONG_PIN);
    CHECK(tries == 2);
    EXPECT(carte_cpx_verify_pin(cpx, "1234", &tries), CARTE_OK);
    sig_len = 0;
    EXPECT(carte_cpx_sign(cpx, (const uint8_t *)"doc", 3, sig, sizeof sig, &sig_len), CARTE_OK);
    CHECK(sig_len == 256);
    EXPECT(carte_cpx_info_json(cpx, buf, sizeof buf, NULL), CARTE_OK);
    CHECK(strstr(buf, "\"generation\" : \"cps4\"") != NULL);
    carte_cpx_free(cpx);

    /* A phone with the (synthetic) appli carte Vitale on the contactless slot reads like a card;
     * QR payloads: garbage is CARTE_E_DATA, a valid one (argv[1], from carte sim apcv-qr) is read once,
     * and its replay is CARTE_E_TOKEN_REFUSED. */
    EXPECT(carte_sim_insert(ctx, readers[2].name, "bundled:apcv/claire-exemple.yaml"), CARTE_OK);
    carte_vitale *phone = NULL;
    EXPECT(carte_read_vitale(ctx, readers[2].name, &phone), CARTE_OK);
    EXPECT(carte_vitale_json(phone, buf, sizeof buf, NULL), CARTE_OK);
    CHECK(strstr(buf, "\"generation\" : \"apcv\"") != NULL);
    EXPECT(carte_vitale_beneficiary_count(phone, &count), CARTE_OK);
    CHECK(count == 3);
    carte_vitale_free(phone);
    EXPECT(carte_sim_insert(ctx, readers[2].name, "bundled:apcv/refus.yaml"), CARTE_OK);
    EXPECT(carte_read_vitale(ctx, readers[2].name, &phone), CARTE_E_CARD);
    EXPECT(carte_read_vitale_qr(ctx, NULL, &phone), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_read_vitale_qr(ctx, "APCV1:", NULL), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_read_vitale_qr(ctx, "not a QR payload", &phone), CARTE_E_DATA);
    CHECK(phone == NULL);
    if (argc > 1) {
        EXPECT(carte_read_vitale_qr(ctx, argv[1], &phone), CARTE_OK);
        carte_vitale_free(phone);
        phone = NULL;
        EXPECT(carte_read_vitale_qr(ctx, argv[1], &phone), CARTE_E_TOKEN_REFUSED);
        EXPECT(carte_last_error(ctx, buf, sizeof buf, NULL), CARTE_OK);
        CHECK(strstr(buf, "already used") != NULL);
    }
    CHECK(strcmp(carte_status_name(CARTE_E_TOKEN_REFUSED), "CARTE_E_TOKEN_REFUSED") == 0);
    CHECK(strcmp(carte_status_name(CARTE_E_PIN_CANCELLED), "CARTE_E_PIN_CANCELLED") == 0);
    CHECK(strcmp(carte_status_name(CARTE_E_PIN_ENTRY), "CARTE_E_PIN_ENTRY") == 0);

    /* A reading outlives its context. */
    carte_vitale *kept = NULL;
    EXPECT(carte_read_vitale(ctx, NULL, &kept), CARTE_OK);

    /* The daemon functions without a daemon. */
    EXPECT(carte_sim_daemon_insert("/nonexistent/sim.sock", 0, 0, "bundled:vitale/twins.yaml"), CARTE_E_NO_READER);
    EXPECT(carte_sim_daemon_insert(NULL, 0, 0, "x"), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_sim_daemon_remove("/nonexistent/sim.sock", -1, 0), CARTE_E_INVALID_ARGUMENT);

    carte_context_free(ctx);
    carte_context_free(ctx);
    EXPECT(carte_list_readers(ctx, readers, 4, &count), CARTE_E_INVALID_ARGUMENT);
    EXPECT(carte_vitale_beneficiary_count(kept, &count), CARTE_OK);
    CHECK(count == 3);
    carte_vitale_free(kept);

    /* A PC/SC context is refused the in-process simulator functions. */
    carte_context *pcsc = NULL;
    EXPECT(carte_context_new(CARTE_BACKEND_PCSC, &pcsc), CARTE_OK);
    EXPECT(carte_sim_insert(pcsc, "x", "bundled:vitale/twins.yaml"), CARTE_E_UNSUPPORTED);
    carte_context_free(pcsc);

    if (failures == 0) printf("misuse: all checks passed\n");
    return failures;
}
