/*
 * A meta file of the version before checksums (cascade-meta 1), as that version wrote them:
 * the upgrade path's fixture, shared by test_store_meta.c (parsing) and test_store.c (a store
 * opened over it keeps its segments). Its ids are replid_a and replid_b of those files.
 */
#ifndef CASCADE_TEST_META_V1_H
#define CASCADE_TEST_META_V1_H

static const char meta_v1[] = "cascade-meta 1\n"
                              "replid 0123456789abcdef0123456789abcdef01234567\n"
                              "replid2 fedcba9876543210fedcba9876543210fedcba98\n"
                              "second_replid_offset 77\n"
                              "snapshot_file snapshot-3.rdb\n"
                              "snapshot_replid 0123456789abcdef0123456789abcdef01234567\n"
                              "snapshot_offset 140\n"
                              "snapshot_size 5000\n"
                              "log_start 1\n"
                              "log_end 140\n";

#endif
