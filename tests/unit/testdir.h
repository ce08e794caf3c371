/*
 * testdir: a temp directory per unit test, for the tests of modules that write files
 * (snapshot, rdbrecv): cmocka setup and teardown that make it and check that the test left
 * it empty, and a count of its entries. Header-only; test code only.
 */
#ifndef CASCADE_TESTDIR_H
#define CASCADE_TESTDIR_H

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Entries in dir besides "." and "..", or -1 if it cannot be read. */
static inline int testdir_count(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    }
    closedir(d);
    return n;
}

/* cmocka setup: *state is the new directory's path. */
static inline int testdir_setup(void **state)
{
    char *dir = strdup("/tmp/cascade-test-XXXXXX");
    if (!dir || !mkdtemp(dir)) {
        free(dir);
        return -1;
    }
    *state = dir;
    return 0;
}

/* cmocka teardown: fails the test if it left files behind (the modules remove their own). */
static inline int testdir_teardown(void **state)
{
    char *dir = *state;
    int left = testdir_count(dir);
    int rc = rmdir(dir);
    free(dir);
    return left == 0 && rc == 0 ? 0 : -1;
}

#endif
