/* router.c: the method + path router declared in router.h. Patterns are stored in a trie of path
 * segments. Each node has a list of literal children, at most one parameter child, and for each
 * method an optional leaf holding the route id and the parameter names of that route (names live
 * in the leaf, not the node, because two routes may share a node while naming its parameter
 * differently). Matching walks the request path in place, prefers literal children over the
 * parameter child and backtracks when a literal branch fails further down. It allocates nothing. */
#include "router.h"
#include "lh.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int route_id;
  int nparams;
  char *names[LH_ROUTER_MAX_PARAMS];
  size_t name_lens[LH_ROUTER_MAX_PARAMS];
} lh_route_leaf_t;

typedef struct lh_rnode_s lh_rnode_t;
struct lh_rnode_s {
  char *seg; /* literal segment text (NULL for the root and parameter nodes) */
  size_t seg_len;
  lh_rnode_t **children; /* literal children */
  size_t nchildren, cap_children;
  lh_rnode_t *param; /* the `{name}` child, if any */
  lh_route_leaf_t *leaf[LH_M__COUNT];
  unsigned methods; /* bit set of methods with a leaf here, for the 405 answer */
};

struct lh_router_s {
  lh_rnode_t root;
};

static const char *const lh_method_names[LH_M__COUNT] = {"GET",   "HEAD",   "POST",   "PUT",
                                                         "PATCH", "DELETE", "OPTIONS"};

int lh_method_parse(const char *s, size_t len) {
  /* Methods are case-sensitive in HTTP, so "get" is not GET. */
  for (int i = 0; i < LH_M__COUNT; i++) {
    if (strlen(lh_method_names[i]) == len && memcmp(lh_method_names[i], s, len) == 0)
      return i;
  }
  return LH_ENOTFOUND;
}

const char *lh_method_name(lh_method_t m) {
  if ((int)m < 0 || m >= LH_M__COUNT)
    return "?";
  return lh_method_names[m];
}

static const struct {
  const char *path;
  int subtree;
} lh_reserved[LH_RESERVED__COUNT] = {{"/healthz", 0}, {"/readyz", 0},       {"/metrics", 0},
                                     {"/admin", 1},   {"/openapi.json", 0}, {"/docs", 1}};

const char *lh_reserved_path_name(lh_reserved_t r, int *subtree) {
  if ((int)r < 0 || r >= LH_RESERVED__COUNT)
    return NULL;
  if (subtree)
    *subtree = lh_reserved[r].subtree;
  return lh_reserved[r].path;
}

/* all_subtrees: treat every reserved path as reserving its subtree. */
static int lh_reserved_find(const char *path, size_t len, int all_subtrees) {
  for (int i = 0; i < LH_RESERVED__COUNT; i++) {
    size_t n = strlen(lh_reserved[i].path);
    if (len < n || memcmp(path, lh_reserved[i].path, n) != 0)
      continue;
    if (len == n || ((all_subtrees || lh_reserved[i].subtree) && path[n] == '/'))
      return i;
  }
  return LH_ENOTFOUND;
}

int lh_reserved_path(const char *path, size_t len) {
  return lh_reserved_find(path, len, 0);
}

int lh_reserved_for_routes(const char *pattern, size_t len) {
  return lh_reserved_find(pattern, len, 1);
}

/* ---- building ---------------------------------------------------------------------------- */

static void lh_rnode_free_children(lh_rnode_t *n) {
  for (size_t i = 0; i < n->nchildren; i++) {
    lh_rnode_free_children(n->children[i]);
    free(n->children[i]);
  }
  free(n->children);
  if (n->param) {
    lh_rnode_free_children(n->param);
    free(n->param);
  }
  for (int m = 0; m < LH_M__COUNT; m++) {
    lh_route_leaf_t *leaf = n->leaf[m];
    if (!leaf)
      continue;
    for (int i = 0; i < leaf->nparams; i++)
      free(leaf->names[i]);
    free(leaf);
  }
  free(n->seg);
}

int lh_router_create(lh_router_t **out) {
  lh_router_t *r = calloc(1, sizeof *r);
  if (!r)
    return LH_ENOMEM;
  *out = r;
  return 0;
}

void lh_router_free(lh_router_t *r) {
  if (!r)
    return;
  lh_rnode_free_children(&r->root);
  free(r);
}

/* One parsed segment of a pattern: a literal, or a parameter whose name is the text inside the
 * braces. */
typedef struct {
  const char *s;
  size_t len;
  int is_param;
} lh_pseg_t;

static int lh_is_name_char(char c, int first) {
  if (c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))
    return 1;
  return !first && c >= '0' && c <= '9';
}

/* Checks one segment and classifies it. Returns 0 or LH_EINVAL with a reason. */
static int lh_parse_pseg(const char *s, size_t len, lh_pseg_t *out, char *err, size_t errlen) {
  if (len >= 2 && s[0] == '{' && s[len - 1] == '}') {
    out->s = s + 1;
    out->len = len - 2;
    out->is_param = 1;
    if (out->len == 0) {
      lh_errf(err, errlen, "empty parameter name");
      return LH_EINVAL;
    }
    for (size_t i = 0; i < out->len; i++) {
      if (!lh_is_name_char(out->s[i], i == 0)) {
        lh_errf(err, errlen, "bad parameter name '%.*s'", (int)out->len, out->s);
        return LH_EINVAL;
      }
    }
    return 0;
  }
  if (memchr(s, '{', len) || memchr(s, '}', len)) {
    lh_errf(err, errlen, "'{' or '}' outside a whole-segment parameter in '%.*s'", (int)len, s);
    return LH_EINVAL;
  }
  out->s = s;
  out->len = len;
  out->is_param = 0;
  return 0;
}

/* Splits a pattern into segments, validating it. Returns the number of segments or LH_EINVAL. */
static int lh_split_pattern(const char *pattern, lh_pseg_t *segs, char *err, size_t errlen) {
  size_t len = strlen(pattern);
  if (len == 0 || pattern[0] != '/') {
    lh_errf(err, errlen, "pattern must start with '/'");
    return LH_EINVAL;
  }
  if (len > 1 && pattern[len - 1] == '/') {
    if (pattern[len - 2] == '/') {
      lh_errf(err, errlen, "empty segment in pattern");
      return LH_EINVAL;
    }
    len--; /* the trailing slash is not significant */
  }
  int n = 0, nparams = 0;
  size_t pos = 1;
  while (pos < len) {
    const char *start = pattern + pos;
    const char *slash = memchr(start, '/', len - pos);
    size_t slen = slash ? (size_t)(slash - start) : len - pos;
    if (slen == 0) {
      lh_errf(err, errlen, "empty segment in pattern");
      return LH_EINVAL;
    }
    if (n == LH_ROUTER_MAX_SEGMENTS) {
      lh_errf(err, errlen, "more than %d segments", LH_ROUTER_MAX_SEGMENTS);
      return LH_EINVAL;
    }
    int rc = lh_parse_pseg(start, slen, &segs[n], err, errlen);
    if (rc < 0)
      return rc;
    if (segs[n].is_param) {
      for (int i = 0; i < n; i++) {
        if (segs[i].is_param && segs[i].len == segs[n].len &&
            memcmp(segs[i].s, segs[n].s, segs[n].len) == 0) {
          lh_errf(err, errlen, "duplicate parameter '%.*s'", (int)segs[n].len, segs[n].s);
          return LH_EINVAL;
        }
      }
      if (++nparams > LH_ROUTER_MAX_PARAMS) {
        lh_errf(err, errlen, "more than %d parameters", LH_ROUTER_MAX_PARAMS);
        return LH_EINVAL;
      }
    }
    n++;
    pos += slen + 1;
  }
  return n;
}

static lh_rnode_t *lh_find_literal(const lh_rnode_t *n, const char *s, size_t len) {
  for (size_t i = 0; i < n->nchildren; i++) {
    lh_rnode_t *c = n->children[i];
    if (c->seg_len == len && memcmp(c->seg, s, len) == 0)
      return c;
  }
  return NULL;
}

/* Returns the child for seg, creating it when missing; NULL when out of memory. */
static lh_rnode_t *lh_child_for(lh_rnode_t *n, const lh_pseg_t *seg) {
  if (seg->is_param) {
    if (!n->param)
      n->param = calloc(1, sizeof *n->param);
    return n->param;
  }
  lh_rnode_t *c = lh_find_literal(n, seg->s, seg->len);
  if (c)
    return c;
  if (n->nchildren == n->cap_children) {
    size_t cap = n->cap_children ? n->cap_children * 2 : 4;
    lh_rnode_t **grown = realloc(n->children, cap * sizeof *grown);
    if (!grown)
      return NULL;
    n->children = grown;
    n->cap_children = cap;
  }
  c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->seg = malloc(seg->len + 1);
  if (!c->seg) {
    free(c);
    return NULL;
  }
  memcpy(c->seg, seg->s, seg->len);
  c->seg[seg->len] = '\0';
  c->seg_len = seg->len;
  n->children[n->nchildren++] = c;
  return c;
}

static lh_route_leaf_t *lh_leaf_new(const lh_pseg_t *segs, int nsegs, int route_id) {
  lh_route_leaf_t *leaf = calloc(1, sizeof *leaf);
  if (!leaf)
    return NULL;
  leaf->route_id = route_id;
  for (int i = 0; i < nsegs; i++) {
    if (!segs[i].is_param)
      continue;
    char *name = malloc(segs[i].len + 1);
    if (!name) {
      for (int k = 0; k < leaf->nparams; k++)
        free(leaf->names[k]);
      free(leaf);
      return NULL;
    }
    memcpy(name, segs[i].s, segs[i].len);
    name[segs[i].len] = '\0';
    leaf->names[leaf->nparams] = name;
    leaf->name_lens[leaf->nparams] = segs[i].len;
    leaf->nparams++;
  }
  return leaf;
}

int lh_router_add(lh_router_t *r, lh_method_t method, const char *pattern, int route_id, char *err,
                  size_t errlen) {
  if (!r || !pattern || (int)method < 0 || method >= LH_M__COUNT || route_id < 0) {
    lh_errf(err, errlen, "invalid argument");
    return LH_EINVAL;
  }
  lh_pseg_t segs[LH_ROUTER_MAX_SEGMENTS];
  int nsegs = lh_split_pattern(pattern, segs, err, errlen);
  if (nsegs < 0)
    return nsegs;
  /* Nodes created on the way stay in the trie even if a later step fails: they carry no route,
   * so they change no match result, and lh_router_free releases them. */
  lh_rnode_t *n = &r->root;
  for (int i = 0; i < nsegs; i++) {
    n = lh_child_for(n, &segs[i]);
    if (!n) {
      lh_errf(err, errlen, "out of memory");
      return LH_ENOMEM;
    }
  }
  if (n->leaf[method]) {
    lh_errf(err, errlen, "duplicate route %s %s", lh_method_names[method], pattern);
    return LH_EEXIST;
  }
  lh_route_leaf_t *leaf = lh_leaf_new(segs, nsegs, route_id);
  if (!leaf) {
    lh_errf(err, errlen, "out of memory");
    return LH_ENOMEM;
  }
  n->leaf[method] = leaf;
  n->methods |= 1u << method;
  return 0;
}

/* ---- matching ---------------------------------------------------------------------------- */

typedef struct {
  const char *path;
  size_t len; /* without the trailing slash */
  lh_method_t method;
  unsigned allowed; /* methods of every node the path reached */
  size_t offs[LH_ROUTER_MAX_PARAMS], lens[LH_ROUTER_MAX_PARAMS];
  const lh_route_leaf_t *found;
} lh_match_state_t;

/* The leaf that serves `method` at n: HEAD falls back to GET. */
static const lh_route_leaf_t *lh_leaf_for(const lh_rnode_t *n, lh_method_t method) {
  if (n->leaf[method])
    return n->leaf[method];
  if (method == LH_M_HEAD)
    return n->leaf[LH_M_GET];
  return NULL;
}

/* Matches the path from byte `pos` (just after a '/', or len at the end) below node n. Returns 1
 * when a route for the method was found (st->found and the offsets are set), else 0 after adding
 * the methods of every node the path reached to st->allowed. Every trie node sits at one depth,
 * so one match visits each node at most once. */
static int lh_match_from(const lh_rnode_t *n, lh_match_state_t *st, size_t pos, int nparams) {
  if (pos >= st->len) {
    const lh_route_leaf_t *leaf = lh_leaf_for(n, st->method);
    if (leaf) {
      st->found = leaf;
      return 1;
    }
    st->allowed |= n->methods;
    return 0;
  }
  const char *seg = st->path + pos;
  const char *slash = memchr(seg, '/', st->len - pos);
  size_t slen = slash ? (size_t)(slash - seg) : st->len - pos;
  if (slen == 0)
    return 0; /* "//" matches nothing */
  size_t next = pos + slen + 1;
  if (slash && next == st->len)
    return 0; /* "/a//" loses only its last slash, leaving an empty segment */
  const lh_rnode_t *lit = lh_find_literal(n, seg, slen);
  if (lit && lh_match_from(lit, st, next, nparams))
    return 1;
  if (n->param && nparams < LH_ROUTER_MAX_PARAMS) {
    st->offs[nparams] = pos;
    st->lens[nparams] = slen;
    if (lh_match_from(n->param, st, next, nparams + 1))
      return 1;
  }
  return 0;
}

int lh_router_match(const lh_router_t *r, lh_method_t method, const char *path, size_t len,
                    lh_route_match_t *m, unsigned *allowed) {
  if (allowed)
    *allowed = 0;
  if (!r || !path || len == 0 || path[0] != '/' || (int)method < 0 || method >= LH_M__COUNT)
    return LH_ENOTFOUND;
  lh_match_state_t st;
  /* One trailing slash is dropped ("/users/" is "/users"); a path ending in "//" keeps an empty
   * segment, and an empty segment matches nothing ("//" is not "/"). */
  if (len > 1 && path[len - 1] == '/' && path[len - 2] == '/')
    return LH_ENOTFOUND;
  st.path = path;
  st.len = len > 1 && path[len - 1] == '/' ? len - 1 : len;
  st.method = method;
  st.allowed = 0;
  st.found = NULL;
  if (lh_match_from(&r->root, &st, 1, 0)) {
    const lh_route_leaf_t *leaf = st.found;
    m->route_id = leaf->route_id;
    m->nparams = leaf->nparams;
    for (int i = 0; i < leaf->nparams; i++) {
      m->params[i].name = leaf->names[i];
      m->params[i].name_len = leaf->name_lens[i];
      m->params[i].off = st.offs[i];
      m->params[i].len = st.lens[i];
    }
    return 0;
  }
  if (!st.allowed)
    return LH_ENOTFOUND;
  /* A GET route also answers HEAD, so the Allow header must say so. */
  if (st.allowed & (1u << LH_M_GET))
    st.allowed |= 1u << LH_M_HEAD;
  if (allowed)
    *allowed = st.allowed;
  return LH_EMETHOD;
}
