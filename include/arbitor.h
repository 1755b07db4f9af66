/* arbitor.h — public C API of libarbitor: true-ternary multimodal models in C17 + CUDA.
 *
 * Layers (each header is self-contained; include this one for all of them):
 *   arbitor/core.h         status, log, tensors, RNG, threads, CPU tiers
 *   arbitor/safetensors.h  validated safetensors reader and atomic writer
 *   arbitor/ternary.h      packed ternary tensors, integer training state, ternary ops, audit
 *   arbitor/model.h        ARBModel: config, forward, backward + update, enumeration, audit
 *
 *   #include <arbitor.h>
 *   arb_safetensors *st;
 *   if (arb_safetensors_open(&st, "model.safetensors") != ARB_OK) {
 *       fprintf(stderr, "error: %s\n", arb_last_error());
 *       return 1;
 *   }
 */
#ifndef ARBITOR_H
#define ARBITOR_H
#include "arbitor/core.h"
#include "arbitor/ternary.h"
#include "arbitor/safetensors.h"
#include "arbitor/model.h"
#include "arbitor/sidecars.h"
#ifdef ARB_HAVE_CUDA
#include "arbitor/cuda.h"
#endif
#endif
