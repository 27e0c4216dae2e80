/* The commit a CarteKit build comes from (`carte --version`, `carte doctor`).
 * CARTEKIT_BUILD_COMMIT is defined by Package.swift from the environment variable of that name, which
 * the scripts set from git (scripts/build-commit.sh); "unknown" for a build without it. */
#ifndef CARTEKIT_BUILD_INFO_H
#define CARTEKIT_BUILD_INFO_H

/// The commit this build was made from (a NUL-terminated ASCII string; never NULL).
const char *cartekit_build_commit(void);

#endif
