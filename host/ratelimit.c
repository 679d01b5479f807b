/* ratelimit.c: fixed-window counters shared by all workers (see ratelimit.h).
 * An open-addressing table would be faster, but a login counter is touched a few times per login
 * at most: a chained hash table under one mutex is simple and far from any bottleneck. */
#include "ratelimit.h"

#include <lauxlib.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LH_RL_BUCKETS 4096

typedef struct lh_rl_entry_s {
  struct lh_rl_entry_s *next;
  long count;
  time_t window_end;
  size_t len;
  char key[];
} lh_rl_entry_t;

static pthread_mutex_t rl_lock = PTHREAD_MUTEX_INITIALIZER;
static lh_rl_entry_t *rl_buckets[LH_RL_BUCKETS];
static size_t rl_size;

static time_t now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec;
}

static unsigned hash_key(const char *k, size_t n) {
  unsigned h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)k[i]) * 16777619u;
  return h % LH_RL_BUCKETS;
}

static lh_rl_entry_t **find(const char *key, size_t len) {
  lh_rl_entry_t **pp = &rl_buckets[hash_key(key, len)];
  while (*pp && !((*pp)->len == len && memcmp((*pp)->key, key, len) == 0))
    pp = &(*pp)->next;
  return pp;
}

/* Drops expired entries; if none had expired, drops the entries whose window ends first. */
static void sweep(time_t now) {
  time_t oldest = 0;
  size_t before = rl_size;
  for (int b = 0; b < LH_RL_BUCKETS; b++) {
    lh_rl_entry_t **pp = &rl_buckets[b];
    while (*pp) {
      lh_rl_entry_t *e = *pp;
      if (e->window_end <= now) {
        *pp = e->next;
        free(e);
        rl_size--;
      } else {
        if (!oldest || e->window_end < oldest)
          oldest = e->window_end;
        pp = &e->next;
      }
    }
  }
  if (rl_size < before)
    return;
  for (int b = 0; b < LH_RL_BUCKETS; b++) {
    lh_rl_entry_t **pp = &rl_buckets[b];
    while (*pp) {
      lh_rl_entry_t *e = *pp;
      if (e->window_end <= oldest) {
        *pp = e->next;
        free(e);
        rl_size--;
      } else {
        pp = &e->next;
      }
    }
  }
}

long lh_ratelimit_incr(const char *key, size_t len, unsigned window_s, unsigned *retry_after) {
  time_t now = now_s();
  long count;
  pthread_mutex_lock(&rl_lock);
  lh_rl_entry_t **pp = find(key, len);
  lh_rl_entry_t *e = *pp;
  if (e && e->window_end <= now) {
    e->count = 0;
    e->window_end = now + (time_t)window_s;
  }
  if (!e) {
    if (rl_size >= LH_RATELIMIT_MAX_KEYS) {
      sweep(now);
      pp = find(key, len);
    }
    e = malloc(sizeof(*e) + len);
    if (!e) {
      pthread_mutex_unlock(&rl_lock);
      *retry_after = window_s;
      return 1; /* counting fails open for one hit rather than refusing every login */
    }
    memcpy(e->key, key, len);
    e->len = len;
    e->count = 0;
    e->window_end = now + (time_t)window_s;
    e->next = NULL;
    *pp = e;
    rl_size++;
  }
  count = ++e->count;
  *retry_after = (unsigned)(e->window_end - now);
  pthread_mutex_unlock(&rl_lock);
  return count;
}

long lh_ratelimit_count(const char *key, size_t len, unsigned *retry_after) {
  time_t now = now_s();
  long count = 0;
  *retry_after = 0;
  pthread_mutex_lock(&rl_lock);
  lh_rl_entry_t *e = *find(key, len);
  if (e && e->window_end > now) {
    count = e->count;
    *retry_after = (unsigned)(e->window_end - now);
  }
  pthread_mutex_unlock(&rl_lock);
  return count;
}

void lh_ratelimit_reset(const char *key, size_t len) {
  pthread_mutex_lock(&rl_lock);
  lh_rl_entry_t **pp = find(key, len);
  lh_rl_entry_t *e = *pp;
  if (e) {
    *pp = e->next;
    free(e);
    rl_size--;
  }
  pthread_mutex_unlock(&rl_lock);
}

void lh_ratelimit_clear(void) {
  pthread_mutex_lock(&rl_lock);
  for (int b = 0; b < LH_RL_BUCKETS; b++) {
    while (rl_buckets[b]) {
      lh_rl_entry_t *e = rl_buckets[b];
      rl_buckets[b] = e->next;
      free(e);
    }
  }
  rl_size = 0;
  pthread_mutex_unlock(&rl_lock);
}

static const char *check_key(lua_State *L, size_t *len) {
  const char *k = luaL_checklstring(L, 1, len);
  luaL_argcheck(L, *len > 0 && *len <= LH_RATELIMIT_MAX_KEY_LEN, 1,
                "key of 1 to 256 bytes expected");
  return k;
}

static int l_incr(lua_State *L) {
  size_t len;
  const char *k = check_key(L, &len);
  lua_Integer w = luaL_checkinteger(L, 2);
  luaL_argcheck(L, w >= 1 && w <= 86400 * 7, 2, "window of 1 s to 7 days expected");
  unsigned retry;
  long n = lh_ratelimit_incr(k, len, (unsigned)w, &retry);
  lua_pushinteger(L, n);
  lua_pushinteger(L, retry);
  return 2;
}

static int l_count(lua_State *L) {
  size_t len;
  const char *k = check_key(L, &len);
  unsigned retry;
  long n = lh_ratelimit_count(k, len, &retry);
  lua_pushinteger(L, n);
  lua_pushinteger(L, retry);
  return 2;
}

static int l_reset(lua_State *L) {
  size_t len;
  const char *k = check_key(L, &len);
  lh_ratelimit_reset(k, len);
  return 0;
}

int luaopen_luahost_ratelimit(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"incr", l_incr}, {"count", l_count}, {"reset", l_reset}, {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  return 1;
}
