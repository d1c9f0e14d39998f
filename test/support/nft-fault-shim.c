// Stands in for libnftables in the fault tests (ADDRMAP_LIBNFTABLES points
// the agent at it): every function addrmap binds forwards to the real
// libnftables.so.1, and the file named by ADDRMAP_TEST_NFT_FAULT, read again
// at every command so a test can change it while the agent runs, picks a fault:
//   no-nat        every command holding a NAT chain names the chain type
//                 "nonat" instead: the kernel looks the type up, finds none and
//                 answers ENOENT, exactly what a kernel without nft_chain_nat
//                 answers for "nat" (same lookup, same failure)
//   fail-batch    every transaction (a JSON batch that lists nothing and is
//                 not a dry run) gets one more operation at its end, deleting an
//                 element its map does not hold: the kernel has processed the
//                 others when it refuses that one (ENOENT), and aborts them all
//   fail-batch N  the same for the Nth transaction only, counted from when the
//                 file last changed
//   anything else, or no file: pass through.
// A fault never makes up an answer: the real library runs the changed command
// and its error buffer says what it says for a kernel's real refusal, so
// src/kernel/nft/errors.ts reads it as it would in production. Prototypes are
// declared here (libnftables-dev not needed); struct nft_ctx stays opaque.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct nft_ctx;

#define REAL_LIBRARY "libnftables.so.1"
#define NO_NAT_FROM "\"type\":\"nat\""
#define NO_NAT_TO "\"type\":\"nonat\""
// Nobody maps 2001:db8::/32 (documentation addresses): the delete always fails.
#define FAILING_OP ",{\"delete\":{\"element\":{\"family\":\"inet\",\"table\":\"addrmap\",\"name\":\"dnat6\",\"elem\":[\"2001:db8::ad:d7\"]}}}"

static struct {
	struct nft_ctx *(*ctx_new)(uint32_t);
	void (*ctx_free)(struct nft_ctx *);
	void (*output_set_flags)(struct nft_ctx *, unsigned int);
	int (*buffer_output)(struct nft_ctx *);
	int (*unbuffer_output)(struct nft_ctx *);
	int (*buffer_error)(struct nft_ctx *);
	const char *(*get_output_buffer)(struct nft_ctx *);
	const char *(*get_error_buffer)(struct nft_ctx *);
	int (*run_cmd_from_buffer)(struct nft_ctx *, const char *);
	void (*set_dry_run)(struct nft_ctx *, bool);
	bool (*get_dry_run)(struct nft_ctx *);
} real;

static void *need(void *lib, const char *name)
{
	void *f = dlsym(lib, name);
	if (!f) {
		fprintf(stderr, "nft-fault-shim: %s: %s\n", REAL_LIBRARY, dlerror());
		abort();
	}
	return f;
}

// Loaded with the shim, so a missing real library fails the load, not a call.
__attribute__((constructor)) static void load_real(void)
{
	void *lib = dlopen(REAL_LIBRARY, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		fprintf(stderr, "nft-fault-shim: %s\n", dlerror());
		abort();
	}
	real.ctx_new = need(lib, "nft_ctx_new");
	real.ctx_free = need(lib, "nft_ctx_free");
	real.output_set_flags = need(lib, "nft_ctx_output_set_flags");
	real.buffer_output = need(lib, "nft_ctx_buffer_output");
	real.unbuffer_output = need(lib, "nft_ctx_unbuffer_output");
	real.buffer_error = need(lib, "nft_ctx_buffer_error");
	real.get_output_buffer = need(lib, "nft_ctx_get_output_buffer");
	real.get_error_buffer = need(lib, "nft_ctx_get_error_buffer");
	real.run_cmd_from_buffer = need(lib, "nft_run_cmd_from_buffer");
	real.set_dry_run = need(lib, "nft_ctx_set_dry_run");
	real.get_dry_run = need(lib, "nft_ctx_get_dry_run");
}

struct nft_ctx *nft_ctx_new(uint32_t flags) { return real.ctx_new(flags); }
void nft_ctx_free(struct nft_ctx *ctx) { real.ctx_free(ctx); }
void nft_ctx_output_set_flags(struct nft_ctx *ctx, unsigned int flags) { real.output_set_flags(ctx, flags); }
int nft_ctx_buffer_output(struct nft_ctx *ctx) { return real.buffer_output(ctx); }
int nft_ctx_unbuffer_output(struct nft_ctx *ctx) { return real.unbuffer_output(ctx); }
int nft_ctx_buffer_error(struct nft_ctx *ctx) { return real.buffer_error(ctx); }
const char *nft_ctx_get_output_buffer(struct nft_ctx *ctx) { return real.get_output_buffer(ctx); }
const char *nft_ctx_get_error_buffer(struct nft_ctx *ctx) { return real.get_error_buffer(ctx); }
void nft_ctx_set_dry_run(struct nft_ctx *ctx, bool dry) { real.set_dry_run(ctx, dry); }
bool nft_ctx_get_dry_run(struct nft_ctx *ctx) { return real.get_dry_run(ctx); }

enum fault { PASS, NO_NAT, FAIL_BATCH };

// The agent runs one command at a time, but on koffi's worker threads.
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char last_text[256];
static struct timespec last_mtime;
static long transactions; // since the fault file last changed

// The fault now, and for fail-batch N, N (0: every transaction).
static enum fault read_fault(long *nth)
{
	const char *path = getenv("ADDRMAP_TEST_NFT_FAULT");
	char text[256] = "";
	struct stat st = {0};
	FILE *f = path ? fopen(path, "r") : NULL;
	if (f) {
		size_t n = fread(text, 1, sizeof text - 1, f);
		text[n] = '\0';
		fstat(fileno(f), &st);
		fclose(f);
	}
	if (strcmp(text, last_text) != 0 || st.st_mtim.tv_sec != last_mtime.tv_sec || st.st_mtim.tv_nsec != last_mtime.tv_nsec) {
		memcpy(last_text, text, sizeof text);
		last_mtime = st.st_mtim;
		transactions = 0;
	}
	char word[32] = "";
	*nth = 0;
	if (sscanf(text, "%31s %ld", word, nth) < 1) return PASS;
	if (strcmp(word, "no-nat") == 0) return NO_NAT;
	if (strcmp(word, "fail-batch") == 0) return FAIL_BATCH;
	return PASS;
}

static char *replace_all(const char *s, const char *from, const char *to)
{
	size_t nfrom = strlen(from), nto = strlen(to), count = 0;
	for (const char *p = s; (p = strstr(p, from)); p += nfrom) count++;
	char *out = malloc(strlen(s) + count * (nto - nfrom) + 1), *o = out;
	if (!out) return NULL;
	for (const char *p = s, *hit; ; p = hit + nfrom) {
		hit = strstr(p, from);
		size_t keep = hit ? (size_t)(hit - p) : strlen(p);
		memcpy(o, p, keep);
		o += keep;
		if (!hit) break;
		memcpy(o, to, nto);
		o += nto;
	}
	*o = '\0';
	return out;
}

// The batch with FAILING_OP as its last operation; NULL if it is not a batch as addrmap writes them.
static char *with_failing_op(const char *s)
{
	size_t n = strlen(s);
	if (n < 2 || strcmp(s + n - 2, "]}") != 0) return NULL;
	char *out = malloc(n + sizeof FAILING_OP);
	if (!out) return NULL;
	memcpy(out, s, n - 2);
	strcpy(out + n - 2, FAILING_OP "]}");
	return out;
}

int nft_run_cmd_from_buffer(struct nft_ctx *ctx, const char *buf)
{
	long nth;
	pthread_mutex_lock(&lock);
	enum fault fault = read_fault(&nth);
	bool transaction = strncmp(buf, "{\"nftables\":", 12) == 0 && !strstr(buf, "{\"list\":") && !real.get_dry_run(ctx);
	if (transaction) transactions++;
	char *changed = NULL;
	if (fault == NO_NAT && strstr(buf, NO_NAT_FROM))
		changed = replace_all(buf, NO_NAT_FROM, NO_NAT_TO);
	else if (fault == FAIL_BATCH && transaction && (nth == 0 || transactions == nth))
		changed = with_failing_op(buf);
	pthread_mutex_unlock(&lock);
	int rc = real.run_cmd_from_buffer(ctx, changed ? changed : buf);
	free(changed);
	return rc;
}
