/*
 * A Triton custom batching strategy (the dynamic batcher's TRITONBACKEND_ModelBatch* hooks)
 * that keeps a request with malformed BYTES framing out of other requests' batches.
 *
 * Why: Triton 2.51's core accepts a BYTES element whose 4-byte length prefix claims more
 * data than the request carries; the Python backend then fails the WHOLE batch ("incomplete
 * string data ..."), so valid requests batched with it fail too. With this strategy such a
 * request only ever runs in a batch of its own: it gets its clear INVALID_ARG error and the
 * requests around it are untouched. Valid requests batch exactly as before.
 *
 * Triton loads it as `batchstrategy.so` from the model directory (the builder puts it there).
 * Only the C ABI of tritonbackend.h is used; the symbols resolve against the server at load.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct TRITONSERVER_Error TRITONSERVER_Error;
typedef struct TRITONBACKEND_Request TRITONBACKEND_Request;
typedef struct TRITONBACKEND_Input TRITONBACKEND_Input;
typedef struct TRITONBACKEND_Model TRITONBACKEND_Model;
typedef struct TRITONBACKEND_Batcher TRITONBACKEND_Batcher;

enum { GUARD_TYPE_BYTES = 13 };  /* TRITONSERVER_TYPE_BYTES */
enum { GUARD_MEMORY_CPU = 0, GUARD_MEMORY_CPU_PINNED = 1 };  /* TRITONSERVER_MEMORY_* */

extern TRITONSERVER_Error* TRITONBACKEND_RequestInputCount(
    TRITONBACKEND_Request* request, uint32_t* count);
extern TRITONSERVER_Error* TRITONBACKEND_RequestInputByIndex(
    TRITONBACKEND_Request* request, const uint32_t index, TRITONBACKEND_Input** input);
extern TRITONSERVER_Error* TRITONBACKEND_InputProperties(
    TRITONBACKEND_Input* input, const char** name, int* datatype, const int64_t** shape,
    uint32_t* dims_count, uint64_t* byte_size, uint32_t* buffer_count);
extern TRITONSERVER_Error* TRITONBACKEND_InputBuffer(
    TRITONBACKEND_Input* input, const uint32_t index, const void** buffer,
    uint64_t* buffer_byte_size, int* memory_type, int64_t* memory_type_id);
extern void TRITONSERVER_ErrorDelete(TRITONSERVER_Error* error);

typedef struct {
  uint32_t included;  /* requests in the batch being formed */
  bool isolated;      /* the batch holds a malformed request: take no other */
} BatchState;

/* Whether `data` holds exactly `elements` length-prefixed strings and nothing else. */
static bool
framing_ok(const uint8_t* data, uint64_t size, int64_t elements)
{
  uint64_t offset = 0;
  for (int64_t i = 0; i < elements; ++i) {
    if (size - offset < 4) {
      return false;
    }
    uint32_t length;
    memcpy(&length, data + offset, 4); /* little-endian, as on every Triton host */
    offset += 4;
    if (size - offset < length) {
      return false;
    }
    offset += length;
  }
  return offset == size;
}

static bool
bytes_input_ok(TRITONBACKEND_Input* input)
{
  const int64_t* shape = NULL;
  uint32_t dims = 0, buffers = 0;
  uint64_t total = 0;
  int datatype = 0;
  TRITONSERVER_Error* err = TRITONBACKEND_InputProperties(
      input, NULL, &datatype, &shape, &dims, &total, &buffers);
  if (err != NULL) {
    TRITONSERVER_ErrorDelete(err);
    return false;
  }
  if (datatype != GUARD_TYPE_BYTES) {
    return true;
  }
  int64_t elements = 1;
  for (uint32_t d = 0; d < dims; ++d) {
    if (shape[d] < 0) {
      return false;
    }
    elements *= shape[d];
  }
  uint8_t* joined = buffers > 1 ? malloc(total ? total : 1) : NULL;
  const uint8_t* data = NULL;
  uint64_t at = 0;
  bool ok = buffers <= 1 || joined != NULL;
  for (uint32_t b = 0; ok && b < buffers; ++b) {
    const void* part = NULL;
    uint64_t part_size = 0;
    int memory_type = GUARD_MEMORY_CPU;
    int64_t memory_id = 0;
    err = TRITONBACKEND_InputBuffer(input, b, &part, &part_size, &memory_type, &memory_id);
    if (err != NULL) {
      TRITONSERVER_ErrorDelete(err);
      ok = false;
    } else if (memory_type != GUARD_MEMORY_CPU && memory_type != GUARD_MEMORY_CPU_PINNED) {
      free(joined); /* device memory: not inspected here */
      return true;
    } else if (buffers == 1) {
      data = part;
      at = part_size;
    } else if (at + part_size > total) {
      ok = false;
    } else {
      memcpy(joined + at, part, part_size);
      at += part_size;
    }
  }
  if (ok) {
    ok = framing_ok(buffers > 1 ? joined : data, at, elements);
  }
  free(joined);
  return ok;
}

static bool
request_ok(TRITONBACKEND_Request* request)
{
  uint32_t count = 0;
  TRITONSERVER_Error* err = TRITONBACKEND_RequestInputCount(request, &count);
  if (err != NULL) {
    TRITONSERVER_ErrorDelete(err);
    return false;
  }
  for (uint32_t i = 0; i < count; ++i) {
    TRITONBACKEND_Input* input = NULL;
    err = TRITONBACKEND_RequestInputByIndex(request, i, &input);
    if (err != NULL) {
      TRITONSERVER_ErrorDelete(err);
      return false;
    }
    if (!bytes_input_ok(input)) {
      return false;
    }
  }
  return true;
}

TRITONSERVER_Error*
TRITONBACKEND_ModelBatcherInitialize(TRITONBACKEND_Batcher** batcher, TRITONBACKEND_Model* model)
{
  (void)model;
  *batcher = NULL;
  return NULL;
}

TRITONSERVER_Error*
TRITONBACKEND_ModelBatcherFinalize(TRITONBACKEND_Batcher* batcher)
{
  (void)batcher;
  return NULL;
}

TRITONSERVER_Error*
TRITONBACKEND_ModelBatchInitialize(const TRITONBACKEND_Batcher* batcher, void** userp)
{
  (void)batcher;
  *userp = calloc(1, sizeof(BatchState));
  return NULL;
}

TRITONSERVER_Error*
TRITONBACKEND_ModelBatchFinalize(void* userp)
{
  free(userp);
  return NULL;
}

/* The first request always starts the batch (excluding it would stall the queue); a
 * malformed one then closes the batch, and a malformed one never joins a started batch.
 * Without state (NULL: the batch was already handed to an instance and the batcher is
 * growing it while the instance is busy) nothing joins: the batch may hold a malformed
 * request, and a request left out simply starts the next batch. */
TRITONSERVER_Error*
TRITONBACKEND_ModelBatchIncludeRequest(
    TRITONBACKEND_Request* request, void* userp, bool* should_include)
{
  BatchState* state = (BatchState*)userp;
  if (state == NULL) {
    *should_include = false;
    return NULL;
  }
  bool ok = request_ok(request);
  if (state->included == 0) {
    *should_include = true;
    state->isolated = !ok;
  } else {
    *should_include = ok && !state->isolated;
  }
  if (*should_include) {
    state->included += 1;
  }
  return NULL;
}
