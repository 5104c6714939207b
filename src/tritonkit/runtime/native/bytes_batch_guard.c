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
 *
 * How the dynamic batcher drives it (Triton 2.51 core, dynamic_batch_scheduler.cc):
 *  - A payload is the batch one model instance executes. ModelBatchInitialize is called with
 *    the payload's user-pointer slot when the payload is created AND every time the batcher
 *    rescans its queue for the same payload (with no request timeouts the queue cursor is
 *    invalid on every pass), including passes that grow a payload already handed to the rate
 *    limiter but not yet executing. So a fresh per-pass state cannot know what the payload
 *    already holds; the state lives per model instead and is keyed by the payload's slot.
 *    A new payload never reuses the current payload's slot (the batcher still holds it).
 *  - With max_queue_delay_microseconds 0 (the builder requires it for guarded steps) every
 *    request a pass includes goes into the payload in that pass, so "included" means "in
 *    the payload". A queue delay would break that, and would also let the rate limiter merge
 *    unsaturated payloads into one execution, mixing a malformed request back in.
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
  void** payload;       /* the payload (its user-pointer slot) the flags describe */
  bool holds_valid;     /* it holds a request with well-formed BYTES framing */
  bool holds_malformed; /* it holds a request with malformed BYTES framing */
} PayloadContents;

typedef struct TRITONSERVER_Message TRITONSERVER_Message;
extern TRITONSERVER_Error* TRITONSERVER_ErrorNew(int code, const char* msg);
extern TRITONSERVER_Error* TRITONBACKEND_ModelConfig(
    TRITONBACKEND_Model* model, const uint32_t config_version, TRITONSERVER_Message** config);
extern TRITONSERVER_Error* TRITONSERVER_MessageSerializeToJson(
    TRITONSERVER_Message* message, const char** base, size_t* byte_size);
extern TRITONSERVER_Error* TRITONSERVER_MessageDelete(TRITONSERVER_Message* message);
enum { GUARD_ERROR_INTERNAL = 1, GUARD_ERROR_INVALID_ARG = 3 };  /* TRITONSERVER_ERROR_* */

/* The dynamic batcher's max_queue_delay_microseconds from the model's configuration
 * (0 when absent); -1 when the configuration cannot be read. */
static long long
queue_delay_us(TRITONBACKEND_Model* model)
{
  TRITONSERVER_Message* config = NULL;
  TRITONSERVER_Error* err = TRITONBACKEND_ModelConfig(model, 1, &config);
  if (err != NULL) {
    TRITONSERVER_ErrorDelete(err);
    return -1;
  }
  const char* json = NULL;
  size_t size = 0;
  long long delay = -1;
  err = TRITONSERVER_MessageSerializeToJson(config, &json, &size);
  if (err != NULL) {
    TRITONSERVER_ErrorDelete(err);
  } else {
    char* text = malloc(size + 1);
    if (text != NULL) {
      memcpy(text, json, size);
      text[size] = '\0';
      delay = 0;
      const char* batching = strstr(text, "\"dynamic_batching\"");
      const char* key = batching ? strstr(batching, "\"max_queue_delay_microseconds\"") : NULL;
      if (key != NULL) {
        key += strlen("\"max_queue_delay_microseconds\"");
        while (*key == ' ' || *key == ':' || *key == '"') {
          ++key;
        }
        delay = strtoll(key, NULL, 10);
      }
      free(text);
    }
  }
  err = TRITONSERVER_MessageDelete(config);
  if (err != NULL) {
    TRITONSERVER_ErrorDelete(err);
  }
  return delay;
}

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

/* Refuses a model whose queue delay is not 0: there the guard's bookkeeping does not hold
 * (see the top of this file), and a clear load error beats a stalled or mixed batch. */
TRITONSERVER_Error*
TRITONBACKEND_ModelBatcherInitialize(TRITONBACKEND_Batcher** batcher, TRITONBACKEND_Model* model)
{
  *batcher = NULL;
  long long delay = queue_delay_us(model);
  if (delay != 0) {
    return TRITONSERVER_ErrorNew(
        GUARD_ERROR_INVALID_ARG,
        delay < 0 ? "BYTES batch guard (batchstrategy.so): cannot read the model configuration"
                  : "BYTES batch guard (batchstrategy.so) needs dynamic_batching "
                    "max_queue_delay_microseconds 0: with a queue delay Triton merges "
                    "separately formed batches, so a request with malformed BYTES framing "
                    "could fail the valid requests batched with it");
  }
  *batcher = calloc(1, sizeof(PayloadContents));
  if (*batcher == NULL) {
    return TRITONSERVER_ErrorNew(GUARD_ERROR_INTERNAL, "BYTES batch guard: out of memory");
  }
  return NULL;
}

TRITONSERVER_Error*
TRITONBACKEND_ModelBatcherFinalize(TRITONBACKEND_Batcher* batcher)
{
  free(batcher);
  return NULL;
}

/* A pass over the queue begins. A payload not seen before starts empty; the same payload
 * again (a rescan, or a pass growing it) keeps what it already holds. */
TRITONSERVER_Error*
TRITONBACKEND_ModelBatchInitialize(const TRITONBACKEND_Batcher* batcher, void** userp)
{
  PayloadContents* contents = (PayloadContents*)batcher;
  if (contents->payload != userp) {
    contents->payload = userp;
    contents->holds_valid = false;
    contents->holds_malformed = false;
  }
  *userp = contents;
  return NULL;
}

/* Nothing to release: the state is the model's, freed in ModelBatcherFinalize. */
TRITONSERVER_Error*
TRITONBACKEND_ModelBatchFinalize(void* userp)
{
  (void)userp;
  return NULL;
}

/* An empty payload takes any request (excluding it would stall the queue). A payload holding
 * a malformed request takes nothing more; one holding valid requests takes valid ones only.
 * Without state (NULL: the batcher is growing a payload outside a pass) nothing joins. */
TRITONSERVER_Error*
TRITONBACKEND_ModelBatchIncludeRequest(
    TRITONBACKEND_Request* request, void* userp, bool* should_include)
{
  PayloadContents* contents = (PayloadContents*)userp;
  if (contents == NULL) {
    *should_include = false;
    return NULL;
  }
  bool ok = request_ok(request);
  if (!contents->holds_valid && !contents->holds_malformed) {
    *should_include = true;
  } else {
    *should_include = ok && !contents->holds_malformed;
  }
  if (*should_include) {
    contents->holds_valid |= ok;
    contents->holds_malformed |= !ok;
  }
  return NULL;
}
