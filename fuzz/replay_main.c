// Replays fuzz inputs without libFuzzer: each argument is a file or a directory of files, each fed
// once to LLVMFuzzerTestOneInput. ctest runs every fuzz target this way over fuzz/corpus/<name>/,
// so the corpus is checked on every build (under ASan+UBSan in the sanitizer tree).
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

// Inputs larger than this are skipped: the fuzzers run with -max_len well below it.
#define REPLAY_INPUT_BYTES_MAX (16u * 1024u * 1024u)

static int
replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return 1;
    }
    uint8_t *buf = malloc(REPLAY_INPUT_BYTES_MAX);
    if (buf == NULL) {
        fclose(f);
        return 1;
    }
    size_t n = fread(buf, 1, REPLAY_INPUT_BYTES_MAX, f);
    fclose(f);
    // Copy into an exact-size allocation so ASan catches reads past the input.
    uint8_t *exact = malloc(n > 0 ? n : 1);
    if (exact == NULL) {
        free(buf);
        return 1;
    }
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

int
main(int argc, char **argv)
{
    int files = 0;
    int failures = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: no such file or directory\n", argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            failures += replay_file(argv[i]);
            files++;
            continue;
        }
        DIR *dir = opendir(argv[i]);
        if (dir == NULL) {
            return 1;
        }
        struct dirent *entry;
        while ((entry = readdir(dir)) != NULL) {
            if (entry->d_name[0] == '.') {
                continue;
            }
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", argv[i], entry->d_name);
            failures += replay_file(path);
            files++;
        }
        closedir(dir);
    }
    printf("replay: %d inputs, %d unreadable\n", files, failures);
    return failures == 0 ? 0 : 1;
}
