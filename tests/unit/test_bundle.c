/* Unit tests for src/pack/bundle: round trip, and hostile archives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>

#include "pack/bundle.h"
#include "pack/pack.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/hash.h"

static char *tmpdir(void)
{
    char *dir = xstrdup("/tmp/packrun-bundle-XXXXXX");

    assert_non_null(mkdtemp(dir));
    return dir;
}

static la_ssize_t to_buf(struct archive *a, void *ctx, const void *data, size_t len)
{
    (void)a;
    buf_add(ctx, data, len);
    return (la_ssize_t)len;
}

/* Entries: name, type ('f' file, 'd' dir, 'l' symlink, 'h' hard link,
 * 'c' char device), and content or link target. */
struct spec {
    const char *name;
    char type;
    const char *data;
};

static void make_tar(const struct spec *specs, struct buf *out)
{
    struct archive *a = archive_write_new();

    archive_write_add_filter_gzip(a);
    archive_write_set_format_pax_restricted(a);
    assert_int_equal(archive_write_open(a, out, NULL, to_buf, NULL), ARCHIVE_OK);
    for (const struct spec *s = specs; s->name; s++) {
        struct archive_entry *e = archive_entry_new();
        size_t len = s->type == 'f' && s->data ? strlen(s->data) : 0;

        archive_entry_set_pathname(e, s->name);
        archive_entry_set_perm(e, 0644);
        if (s->type == 'f') {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_size(e, (la_int64_t)len);
        } else if (s->type == 'd') {
            archive_entry_set_filetype(e, AE_IFDIR);
            archive_entry_set_perm(e, 0755);
        } else if (s->type == 'l') {
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink(e, s->data);
        } else if (s->type == 'h') {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, s->data);
        } else {
            archive_entry_set_filetype(e, AE_IFCHR);
        }
        archive_write_header(a, e);
        if (len)
            archive_write_data(a, s->data, len);
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
}

static const char *pack_yaml = "ref: t\nlabel: T\ndescription: d\nversion: '1'\n";

static void expect_extract(const struct spec *specs, int want, const char *word)
{
    struct buf tar = BUF_INIT;
    char *dest = tmpdir();
    int rc;

    make_tar(specs, &tar);
    rc = bundle_extract(tar.data, tar.len, dest);
    assert_int_equal(rc, want);
    if (word && !strstr(err_msg(), word))
        fail_msg("expected '%s' in: %s", word, err_msg());
    fs_rmtree(dest);
    free(dest);
    buf_free(&tar);
}

static void test_round_trip_keeps_the_digest(void **state)
{
    const char *src = getenv("PACKRUN_SOURCE_DIR");
    char *hello = xasprintf("%s/examples/packs/hello", src ? src : ".");
    json_t *a = NULL, *b = NULL, *problems = NULL;
    struct buf tar = BUF_INIT;
    char *dest = tmpdir();

    (void)state;
    assert_int_equal(pack_load(hello, &a, &problems), 0);
    assert_int_equal(bundle_create(hello, &tar), 0);
    assert_true(tar.len > 0);
    assert_int_equal(bundle_extract(tar.data, tar.len, dest), 0);
    assert_int_equal(pack_load(dest, &b, &problems), 0);
    assert_string_equal(json_string_value(json_object_get(a, "digest")),
                        json_string_value(json_object_get(b, "digest")));

    json_decref(a);
    json_decref(b);
    buf_free(&tar);
    fs_rmtree(dest);
    free(dest);
    free(hello);
}

static void test_top_folder_is_stripped(void **state)
{
    const struct spec specs[] = {
        {"mypack/", 'd', NULL},
        {"mypack/pack.yaml", 'f', pack_yaml},
        {"mypack/actions/", 'd', NULL},
        {NULL, 0, NULL},
    };
    struct buf tar = BUF_INIT;
    char *dest = tmpdir();
    char *yaml = fs_join(dest, "pack.yaml");

    (void)state;
    make_tar(specs, &tar);
    assert_int_equal(bundle_extract(tar.data, tar.len, dest), 0);
    assert_true(fs_exists(yaml));
    free(yaml);
    buf_free(&tar);
    fs_rmtree(dest);
    free(dest);
}

static void test_dotdot_is_refused(void **state)
{
    const struct spec specs[] = {
        {"pack.yaml", 'f', pack_yaml}, {"../evil", 'f', "x"}, {NULL, 0, NULL}};

    (void)state;
    expect_extract(specs, ERR_INVALID, "../evil");
}

static void test_absolute_path_is_refused(void **state)
{
    const struct spec specs[] = {
        {"pack.yaml", 'f', pack_yaml}, {"/tmp/packrun-evil", 'f', "x"}, {NULL, 0, NULL}};

    (void)state;
    expect_extract(specs, ERR_INVALID, "packrun-evil");
    assert_false(fs_exists("/tmp/packrun-evil"));
}

static void test_write_through_symlink_is_refused(void **state)
{
    const struct spec specs[] = {{"pack.yaml", 'f', pack_yaml},
                                 {"lib", 'l', "../../../../tmp"},
                                 {"lib/packrun-evil2", 'f', "x"},
                                 {NULL, 0, NULL}};

    (void)state;
    expect_extract(specs, ERR_INVALID, NULL);
    assert_false(fs_exists("/tmp/packrun-evil2"));
}

static void test_absolute_symlink_is_refused(void **state)
{
    const struct spec specs[] = {
        {"pack.yaml", 'f', pack_yaml}, {"etc", 'l', "/etc"}, {NULL, 0, NULL}};

    (void)state;
    expect_extract(specs, ERR_INVALID, "absolute");
}

static void test_devices_and_hard_links_are_refused(void **state)
{
    const struct spec dev[] = {{"pack.yaml", 'f', pack_yaml}, {"dev", 'c', NULL}, {NULL, 0, NULL}};
    const struct spec hard[] = {
        {"pack.yaml", 'f', pack_yaml}, {"h", 'h', "pack.yaml"}, {NULL, 0, NULL}};

    (void)state;
    expect_extract(dev, ERR_INVALID, "only files");
    expect_extract(hard, ERR_INVALID, "hard link");
}

static void test_garbage_is_refused(void **state)
{
    char *dest = tmpdir();

    (void)state;
    assert_int_equal(bundle_extract("not an archive at all", 21, dest), ERR_INVALID);
    fs_rmtree(dest);
    free(dest);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_keeps_the_digest),
        cmocka_unit_test(test_top_folder_is_stripped),
        cmocka_unit_test(test_dotdot_is_refused),
        cmocka_unit_test(test_absolute_path_is_refused),
        cmocka_unit_test(test_write_through_symlink_is_refused),
        cmocka_unit_test(test_absolute_symlink_is_refused),
        cmocka_unit_test(test_devices_and_hard_links_are_refused),
        cmocka_unit_test(test_garbage_is_refused),
    };

    hash_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
