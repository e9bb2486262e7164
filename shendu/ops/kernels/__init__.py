"""Array kernels with no autograd (im2col/col2im, Winograd, FFT, scatter helpers), shared by ops."""
