/*
 * testdir: temp directories and files for the unit tests of modules that write them
 * (snapshot, rdbrecv, store, store_meta): cmocka setup and teardown that make a directory and
 * check that the test left it empty, a count of its entries, emptying one, and whole-file
 * writes and reads that fail the test when they fail. Header-only; test code only; include
 * after <cmocka.h>.
 */
#ifndef CASCADE_TESTDIR_H
#define CASCADE_TESTDIR_H

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
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

/* Removes every entry of dir (files, and empty directories); 0, or -1 if one stayed. */
static inline int testdir_clear(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (unlink(path) != 0 && rmdir(path) != 0)
            rc = -1;
    }
    closedir(d);
    return rc;
}

/* path holds exactly buf[0..len) afterwards, or the test fails. */
static inline void testdir_write(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
}

/* Up to n bytes of path into buf; how many. The test fails if it cannot be read. */
static inline size_t testdir_read(const char *path, void *buf, size_t n)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t got = read(fd, buf, n);
    close(fd);
    assert_true(got >= 0);
    return (size_t)got;
}

#endif
