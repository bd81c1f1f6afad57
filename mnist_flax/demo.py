"""A drawing page that classifies as you draw, with the model in the browser.

    python -m mnist_flax.demo --workdir=runs/base [--port=8000]
    python -m mnist_flax.demo --model=runs/base/export/model.onnx

With --workdir it exports the run to ONNX first (once; the file is reused while
it is newer than the run's checkpoints). The server only hands out files: the
page, onnxruntime-web (vendored in demo_static/vendor, never a CDN), the model
and its class names; drawing, preprocessing and inference happen in the
browser. It listens on 127.0.0.1 only.
"""

import http.server
import json
import os
import pathlib
import sys

from absl import app
from absl import flags
from absl import logging

from mnist_flax import export as export_lib
from mnist_flax import flagging
from mnist_flax.errors import UserError

STATIC = pathlib.Path(__file__).resolve().parent / 'demo_static'
CONTENT_TYPES = {
    '.html': 'text/html; charset=utf-8',
    '.js': 'text/javascript; charset=utf-8',
    '.mjs': 'text/javascript; charset=utf-8',
    '.wasm': 'application/wasm',
    '.json': 'application/json',
    '.onnx': 'application/octet-stream',
}


def _newest_checkpoint_mtime(workdir: str) -> float:
  folder = os.path.join(workdir, 'checkpoints')
  times = [os.path.getmtime(os.path.join(folder, n))
           for n in os.listdir(folder)] if os.path.isdir(folder) else []
  return max(times, default=0.0)


def ensure_onnx(workdir: str, checkpoint: str = 'latest') -> str:
  """The run's ONNX export, made now unless an up-to-date one exists."""
  out = export_lib.default_out(workdir, 'onnx', checkpoint, 'none')
  try:
    export_lib.read_metadata(out)
    fresh = os.path.getmtime(out) >= _newest_checkpoint_mtime(workdir)
  except (UserError, OSError):
    fresh = False
  if not fresh:
    print(f'exporting {workdir} to {out} ...', flush=True)
    export_lib.export(workdir, 'onnx', out, checkpoint)
  return out


def model_info(model_path: str) -> dict:
  """What the page needs to know: class names and where the model is from."""
  meta = export_lib.read_metadata(model_path)
  if meta['format'] != 'onnx':
    raise export_lib.ExportError(f'{model_path}: a {meta["format"]} export; '
                                 'the page runs ONNX')
  source = meta.get('source', {})
  name = os.path.basename(os.path.normpath(source.get('workdir', model_path)))
  return {'class_names': meta['class_names'],
          'source': f'{name}, epoch {source.get("epoch")}'}


class Handler(http.server.BaseHTTPRequestHandler):
  """GET only, from a fixed set of files."""

  model_path = ''
  info = b''

  def do_GET(self):  # pylint: disable=invalid-name
    path = self.path.split('?', 1)[0]
    if path in ('/', '/index.html'):
      self._send_file(STATIC / 'index.html')
    elif path == '/model.onnx':
      self._send_file(pathlib.Path(self.model_path), cache=False)
    elif path == '/model.json':
      self._send(self.info, CONTENT_TYPES['.json'], cache=False)
    elif path.startswith('/static/'):
      target = (STATIC / path[len('/static/'):]).resolve()
      if STATIC in target.parents and target.is_file() and (
          target.suffix in CONTENT_TYPES):
        self._send_file(target)
      else:
        self.send_error(404)
    else:
      self.send_error(404)

  def _send_file(self, path: pathlib.Path, cache: bool = True):
    self._send(path.read_bytes(), CONTENT_TYPES[path.suffix], cache)

  def _send(self, body: bytes, content_type: str, cache: bool = True):
    self.send_response(200)
    self.send_header('Content-Type', content_type)
    self.send_header('Content-Length', str(len(body)))
    self.send_header('Cache-Control', 'max-age=3600' if cache else 'no-store')
    self.end_headers()
    self.wfile.write(body)

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    del format, args  # One line per file would drown the URL line.


def make_server(model_path: str, port: int = 8000):
  """A server for the page on 127.0.0.1:port (0 picks a free port)."""
  info = json.dumps(model_info(model_path)).encode()
  handler = type('DemoHandler', (Handler,),
                 {'model_path': os.path.abspath(model_path), 'info': info})
  return http.server.ThreadingHTTPServer(('127.0.0.1', port), handler)


def _define_flags() -> None:
  flags.DEFINE_string('workdir', None, 'Run directory; exported to ONNX '
                      'first if needed.')
  flags.DEFINE_string('model', None, 'An ONNX file from mnist_flax.export '
                      '(with its .json beside it), instead of --workdir.')
  flags.DEFINE_string('checkpoint', 'latest',
                      "With --workdir: 'latest', 'best' or an epoch number.")
  flags.DEFINE_integer('port', 8000, 'Port on 127.0.0.1; 0 picks a free one.',
                       lower_bound=0, upper_bound=65535)


def main(argv) -> int:
  f = flags.FLAGS
  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1 or bool(f.workdir) == bool(f.model):
    print('error: usage: python -m mnist_flax.demo (--workdir=RUN | '
          '--model=FILE.onnx) [--port=8000]', file=sys.stderr)
    return 2
  try:
    model_path = f.model or ensure_onnx(f.workdir, f.checkpoint)
    if not os.path.isfile(model_path):
      raise export_lib.ExportError(f'{model_path}: not found')
    server = make_server(model_path, f.port)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return e.exit_code
  except OSError as e:
    print(f'error: cannot listen on 127.0.0.1:{f.port} ({e.strerror})',
          file=sys.stderr)
    return 2
  print(f'serving {model_path} at http://127.0.0.1:{server.server_port}/ '
        '(Ctrl-C stops)', flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()
  return 0


if __name__ == '__main__':
  _define_flags()
  app.run(lambda argv: sys.exit(main(argv)),
          flags_parser=flagging.parse_flags_or_exit)
