// The generator's mode enums, without LibTorch: how its convolutions are
// formulated (ConvMode) and where its noise comes from (NoiseMode). They are
// part of a job's settings (adapt/options.h), which the front server reads
// without linking LibTorch; layers.h and generator.h document what each mode
// computes.
//
// Thread-safety: plain values.
#ifndef RESTYLE_WORKER_ENGINE_STYLEGAN2_MODES_H_
#define RESTYLE_WORKER_ENGINE_STYLEGAN2_MODES_H_

namespace restyle::engine {

// Which exact formulation of the modulated convolutions runs.
enum class ConvMode {
  kAuto,       // kFused (faster at every batch size measured on CPU)
  kReference,  // the reference's grouped per-sample convolution
  kFused,      // modulate activations; one shared convolution per batch
  kFusedTransposed,  // kFused, upsampling by LibTorch's transposed convolution
  kFusedSubpixel,    // kFused, upsampling conv + blur as one conv and a pixel shuffle
};

// kFused, kFusedTransposed or kFusedSubpixel (after ResolveConvMode).
inline bool IsFused(ConvMode mode) {
  return mode == ConvMode::kFused || mode == ConvMode::kFusedTransposed ||
         mode == ConvMode::kFusedSubpixel;
}

enum class NoiseMode {
  kRandom,  // fresh N(0,1) per call (the reference's randomize_noise=True)
  kStored,  // the noises.noise_i buffers, broadcast over the batch
  kGiven,   // SynthesisOptions::noise, one tensor per noise layer
};

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_STYLEGAN2_MODES_H_
