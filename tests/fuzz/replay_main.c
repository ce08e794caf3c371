/*
 * Corpus replay driver: links with one fuzz target instead of libFuzzer, so that every
 * `meson test` (gcc or clang, with or without sanitizers) runs the committed corpus through
 * the target's checks. Arguments are files or directories (read recursively, in name order);
 * each file is one input, passed in a buffer of exactly its size so ASan sees overreads.
 * Fails if a path cannot be read or no input was found; a failing check aborts.
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static size_t inputs_run;

static int run_file(const char *path, off_t size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t n = (size_t)size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        abort();
    size_t got = n ? fread(buf, 1, n, f) : 0;
    fclose(f);
    if (got != n) {
        fprintf(stderr, "%s: short read\n", path);
        free(buf);
        return -1;
    }
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    inputs_run++;
    return 0;
}

static int skip_dots(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

static int run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return run_file(path, st.st_size);
    struct dirent **names;
    int n = scandir(path, &names, skip_dots, alphasort);
    if (n < 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(path) + strlen(names[i]->d_name) + 2;
        char *child = malloc(len);
        if (!child)
            abort();
        snprintf(child, len, "%s/%s", path, names[i]->d_name);
        if (run_path(child) != 0)
            rc = -1;
        free(child);
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    /* libFuzzer always starts with the empty input; so does the replay. */
    uint8_t empty = 0;
    LLVMFuzzerTestOneInput(&empty, 0);
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        if (run_path(argv[i]) != 0)
            rc = 1;
    }
    printf("%zu inputs replayed\n", inputs_run);
    if (inputs_run == 0) {
        fprintf(stderr, "no inputs found\n");
        rc = 1;
    }
    return rc;
}
