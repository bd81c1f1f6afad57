/**
 * A drawing -> a 28x28 MNIST-style image, by the rules of predict.mnist_like:
 * either polarity made white-on-black, the ink's bounding box fitted in 20x20
 * (aspect kept, PIL's Lanczos resampling), then placed so that its centre of
 * mass is at the centre of 28x28.
 *
 * Written to agree with the Python function pixel for pixel (float32 where
 * numpy and PIL store float32, round-half-to-even where Python rounds), so the
 * page feeds the model what `python -m mnist_flax.predict` would.
 * tests/test_demo.py runs it under node against the Python function.
 *
 * Browser: window.MnistPreprocess.mnistLike(gray, width, height).
 * Node:    require('./preprocess.js').mnistLike(gray, width, height).
 */
(function (root, factory) {
  if (typeof module === 'object' && module.exports) {
    module.exports = factory();
  } else {
    root.MnistPreprocess = factory();
  }
})(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  const SIZE = 28;
  const BOX = 20;
  const LANCZOS_SUPPORT = 3.0;

  /** Python's round() and numpy's rint(): halves go to the even neighbour. */
  function roundHalfEven(x) {
    const r = Math.round(x);
    return (Math.abs(x % 1) === 0.5 && r % 2 !== 0) ? r - 1 : r;
  }

  /** numpy.median of a Float32Array, as float32. */
  function median(values) {
    const s = Float32Array.from(values).sort();
    const n = s.length;
    if (n % 2) return s[(n - 1) / 2];
    return Math.fround((s[n / 2 - 1] + s[n / 2]) / 2);
  }

  /** numpy's pairwise summation of a[start:start+n]; `f` rounds each partial
   * sum to the accumulator's precision (Math.fround for float32). */
  function pairwiseSum(a, start, n, f) {
    if (n < 8) {
      let res = 0;
      for (let i = 0; i < n; i++) res = f(res + a[start + i]);
      return res;
    }
    if (n <= 128) {
      const r = [];
      for (let j = 0; j < 8; j++) r.push(f(a[start + j]));
      let i = 8;
      for (; i < n - (n % 8); i += 8) {
        for (let j = 0; j < 8; j++) r[j] = f(r[j] + a[start + i + j]);
      }
      let res = f(f(f(r[0] + r[1]) + f(r[2] + r[3])) +
                  f(f(r[4] + r[5]) + f(r[6] + r[7])));
      for (; i < n; i++) res = f(res + a[start + i]);
      return res;
    }
    let n2 = Math.floor(n / 2);
    n2 -= n2 % 8;
    return f(pairwiseSum(a, start, n2, f) +
             pairwiseSum(a, start + n2, n - n2, f));
  }

  /** ndarray.sum() of a small contiguous array. */
  function numpySum(a, f) {
    return pairwiseSum(a, 0, a.length, f);
  }

  function sinc(x) {
    if (x === 0) return 1.0;
    x *= Math.PI;
    return Math.sin(x) / x;
  }

  function lanczos(x) {
    return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0;
  }

  /** PIL's precompute_coeffs (Resample.c) for one axis. */
  function coefficients(inSize, outSize) {
    const scale = inSize / outSize;
    const filterscale = Math.max(scale, 1.0);
    const support = LANCZOS_SUPPORT * filterscale;
    const out = [];
    for (let xx = 0; xx < outSize; xx++) {
      const center = (xx + 0.5) * scale;
      const ss = 1.0 / filterscale;
      const xmin = Math.max(0, Math.trunc(center - support + 0.5));
      const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
      const k = new Float64Array(Math.max(xmax, 0));
      let ww = 0.0;
      for (let x = 0; x < xmax; x++) {
        k[x] = lanczos((x + xmin - center + 0.5) * ss);
        ww += k[x];
      }
      if (ww !== 0.0) for (let x = 0; x < xmax; x++) k[x] /= ww;
      out.push({xmin, k});
    }
    return out;
  }

  /** PIL Image.resize(..., LANCZOS) of a mode 'F' image: a horizontal pass
   * then a vertical one, double sums stored as float32. */
  function resizeLanczos(src, w, h, outW, outH) {
    let mid = src;
    if (outW !== w) {
      const cx = coefficients(w, outW);
      mid = new Float32Array(outW * h);
      for (let y = 0; y < h; y++) {
        for (let xx = 0; xx < outW; xx++) {
          const {xmin, k} = cx[xx];
          let s = 0.0;
          for (let x = 0; x < k.length; x++) s += src[y * w + x + xmin] * k[x];
          mid[y * outW + xx] = s;
        }
      }
    }
    if (outH === h) return mid;
    const cy = coefficients(h, outH);
    const out = new Float32Array(outW * outH);
    for (let yy = 0; yy < outH; yy++) {
      const {xmin: ymin, k} = cy[yy];
      for (let xx = 0; xx < outW; xx++) {
        let s = 0.0;
        for (let y = 0; y < k.length; y++) s += mid[(y + ymin) * outW + xx] * k[y];
        out[yy * outW + xx] = s;
      }
    }
    return out;
  }

  /**
   * gray: [height * width] grayscale in [0, 255] (any array type), row-major,
   * either polarity. Returns a Uint8Array(784), or null where predict would
   * say "no digit found" (blank or no contrast).
   */
  function mnistLike(gray, width, height) {
    let g = Float32Array.from(gray);
    const border = [];
    for (let x = 0; x < width; x++) border.push(g[x]);
    for (let x = 0; x < width; x++) border.push(g[(height - 1) * width + x]);
    for (let y = 0; y < height; y++) border.push(g[y * width]);
    for (let y = 0; y < height; y++) border.push(g[y * width + width - 1]);
    let bg = median(border);
    if (bg > 127) {  // Dark ink on a light background.
      g = g.map((v) => 255 - v);
      bg = median(border.map((v) => Math.fround(255 - v)));
    }
    let max = 0;
    for (let i = 0; i < g.length; i++) {
      g[i] = Math.min(Math.max(g[i] - bg, 0), 255);
      if (g[i] > max) max = g[i];
    }
    if (max < 32) return null;
    const threshold = Math.fround(0.2 * max);
    let r0 = height, r1 = -1, c0 = width, c1 = -1;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (g[y * width + x] > threshold) {
          r0 = Math.min(r0, y); r1 = Math.max(r1, y);
          c0 = Math.min(c0, x); c1 = Math.max(c1, x);
        }
      }
    }
    const ch = r1 - r0 + 1, cw = c1 - c0 + 1;
    const crop = new Float32Array(ch * cw);
    for (let y = 0; y < ch; y++) {
      for (let x = 0; x < cw; x++) crop[y * cw + x] = g[(y + r0) * width + x + c0];
    }
    const scale = BOX / Math.max(ch, cw);
    const sw = Math.max(1, roundHalfEven(cw * scale));
    const sh = Math.max(1, roundHalfEven(ch * scale));
    const small = resizeLanczos(crop, cw, ch, sw, sh);
    let smallMax = -Infinity;  // Before clipping, as predict.py takes it.
    for (let i = 0; i < small.length; i++) {
      smallMax = Math.max(smallMax, small[i]);
      small[i] = Math.min(Math.max(small[i], 0), 255);
    }
    // float32, as numpy makes 255.0 / a float32 scalar.
    const gain = smallMax > 1e-6 ? Math.fround(255.0 / smallMax) : 255.0 / 1e-6;
    const ys = new Float64Array(small.length);
    const xs = new Float64Array(small.length);
    for (let i = 0; i < small.length; i++) {
      small[i] = Math.fround(small[i] * gain);
      ys[i] = Math.floor(i / sw) * small[i];
      xs[i] = (i % sw) * small[i];
    }
    // Summed as numpy does (float32 mass, float64 moments): the centre of a
    // symmetric stroke sits on a .5 and must round the same way.
    const mass = numpySum(small, Math.fround);
    const same = (v) => v;
    const top = Math.min(Math.max(
        roundHalfEven(14 - numpySum(ys, same) / mass), 0), SIZE - sh);
    const left = Math.min(Math.max(
        roundHalfEven(14 - numpySum(xs, same) / mass), 0), SIZE - sw);
    const out = new Uint8Array(SIZE * SIZE);
    for (let y = 0; y < sh; y++) {
      for (let x = 0; x < sw; x++) {
        const v = roundHalfEven(small[y * sw + x]);
        out[(y + top) * SIZE + x + left] = Math.min(Math.max(v, 0), 255);
      }
    }
    return out;
  }

  return {mnistLike, resizeLanczos, roundHalfEven, SIZE};
});
