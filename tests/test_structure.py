"""The package's shape: no import cycles (imports inside functions count) and
no module too long to read in one sitting."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'mnist_flax'
MAX_LINES = 400


def _imports(path: pathlib.Path) -> set[str]:
  """The mnist_flax modules `path` imports, anywhere in the file."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module:
      if node.module == 'mnist_flax':
        names.update(a.name for a in node.names)
      elif node.module.startswith('mnist_flax.'):
        names.add(node.module.split('.')[1])
    elif isinstance(node, ast.Import):
      names.update(a.name.split('.')[1] for a in node.names
                   if a.name.startswith('mnist_flax.'))
  return names


def test_no_import_cycle():
  modules = {p.stem for p in PACKAGE.glob('*.py')}
  graph = {p.stem: _imports(p) & modules for p in PACKAGE.glob('*.py')}
  state = {}  # 1: on the current path, 2: done.

  def visit(module, path):
    if state.get(module) == 1:
      cycle = path[path.index(module):] + [module]
      raise AssertionError('import cycle: ' + ' -> '.join(cycle))
    if state.get(module) == 2:
      return
    state[module] = 1
    for dep in sorted(graph[module]):
      visit(dep, path + [module])
    state[module] = 2

  for module in sorted(graph):
    visit(module, [])
  assert graph['train'] and graph['predict'], 'the import parser found nothing'


def test_modules_are_short():
  long = {p.name: n for p in PACKAGE.glob('*.py')
          if (n := len(p.read_text().splitlines())) > MAX_LINES}
  assert not long, f'modules over {MAX_LINES} lines: {long}'
