/// Tensors, kernels and the thread pool: the numeric floor of peft4j, depending on nothing but the JDK.
///
/// Dimension letters, used only inside kernels and layers:
/// `B` batch, `T` sequence length, `C` hidden size (channels), `V` vocabulary size, `L` layers,
/// `NH` query heads, `KVH` key/value heads, `HS` head size, `N` rows (= B·T), `K` inner dimension, `M` output features.
///
/// Activations and weights are row-major `float[]`; a PyTorch `nn.Linear` weight is `(M, K)`.
package org.peft4j.core;
