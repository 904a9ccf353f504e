"""graphformer.datasets.molecules: features against RDKit's own counts, readers' errors, splits."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("rdkit")

from rdkit import Chem  # noqa: E402
from rdkit.Chem.Scaffolds import MurckoScaffold  # noqa: E402

from graphformer.datasets import molecules  # noqa: E402

SMILES = ["CCO", "c1ccccc1O", "CC(=O)[O-]", "C#N", "C/C=C/Cl", "[NH4+]", "[Na+].[Cl-]", "O=S(=O)(O)c1ccc2ccccc2c1",
          "C1CC2(CC1)OCCO2", "[SiH4]"]
ELEMENTS = molecules.ATOM_FEATURES["element"]


def column(name: str, table: dict) -> int:
    return list(table).index(name)


def decode(data, name: str, table: dict = molecules.ATOM_FEATURES) -> list:
    choices = table[name]
    index = data.x if table is molecules.ATOM_FEATURES else data.edge_attr
    return [choices[k] for k in index[:, column(name, table)].tolist()]


@pytest.mark.parametrize("smiles", SMILES)
def test_features_match_rdkit(smiles):
    mol = Chem.MolFromSmiles(smiles)
    data = molecules.from_smiles(smiles, y=1.5)
    assert data.smiles == smiles and data.y.tolist() == [1.5]
    assert data.num_nodes == mol.GetNumAtoms() and data.x.dtype == torch.long
    assert data.edge_index.shape == (2, 2 * mol.GetNumBonds()) and data.edge_attr.shape == (2 * mol.GetNumBonds(), 4)
    atoms = list(mol.GetAtoms())
    assert decode(data, "element") == [a.GetSymbol() if a.GetSymbol() in ELEMENTS else "other" for a in atoms]
    assert decode(data, "degree") == [a.GetDegree() for a in atoms]
    assert decode(data, "formal_charge") == [a.GetFormalCharge() for a in atoms]
    assert decode(data, "num_hs") == [a.GetTotalNumHs() for a in atoms]
    assert decode(data, "aromatic") == [a.GetIsAromatic() for a in atoms]
    assert decode(data, "in_ring") == [a.IsInRing() for a in atoms]
    # degree = number of incoming edges; edges come in both directions with equal features
    assert torch.bincount(data.edge_index[1], minlength=data.num_nodes).tolist() == [a.GetDegree() for a in atoms]
    assert torch.equal(data.edge_index[:, 0::2], data.edge_index[:, 1::2].flip(0))
    assert torch.equal(data.edge_attr[0::2], data.edge_attr[1::2])
    bonds = [mol.GetBondBetweenAtoms(i, j) for i, j in data.edge_index[:, 0::2].t().tolist()]
    assert all(b is not None for b in bonds)
    bond_types = decode(data, "bond_type", molecules.BOND_FEATURES)[0::2]
    assert bond_types == [str(b.GetBondType()) for b in bonds]
    assert decode(data, "in_ring", molecules.BOND_FEATURES)[0::2] == [b.IsInRing() for b in bonds]
    assert decode(data, "conjugated", molecules.BOND_FEATURES)[0::2] == [b.GetIsConjugated() for b in bonds]
    assert decode(data, "stereo", molecules.BOND_FEATURES)[0::2] == [str(b.GetStereo()) for b in bonds]


def test_counts_on_a_known_molecule():
    data = molecules.from_smiles("c1ccccc1O")  # phenol: 7 atoms, 7 bonds (6 aromatic), 5 aromatic CH
    aromatic = molecules.BOND_FEATURES["bond_type"].index("AROMATIC")
    assert data.num_nodes == 7 and data.num_edges == 14
    assert int((data.edge_attr[:, 0] == aromatic).sum()) == 12
    assert decode(data, "num_hs").count(1) == 6 and decode(data, "element").count("O") == 1
    assert decode(data, "hybridization") == ["SP2"] * 7


def test_other_buckets_and_one_hot_form():
    data = molecules.from_smiles("[Sn](Cl)(Cl)(Cl)Cl")  # tin: not in the element list
    assert decode(data, "element")[0] == "other"
    hot = molecules.from_smiles("[Sn](Cl)(Cl)(Cl)Cl", one_hot=True)
    assert hot.x.dtype == torch.float and hot.x.shape == (5, sum(molecules.ATOM_FEATURE_SIZES))
    assert hot.edge_attr.shape == (8, sum(molecules.BOND_FEATURE_SIZES))
    assert torch.equal(hot.x, molecules.one_hot(data.x, molecules.ATOM_FEATURE_SIZES))
    assert hot.x.sum(1).tolist() == [len(molecules.ATOM_FEATURES)] * 5  # one 1 per feature block
    with pytest.raises(ValueError, match=r"\[M, 7\]"):
        molecules.one_hot(data.x[:, :3], molecules.ATOM_FEATURE_SIZES)


@pytest.mark.parametrize("bad", ["C1CC", "not a molecule", "", "C(C"])
def test_bad_smiles_raises(bad):
    with pytest.raises(ValueError, match="not a valid SMILES"):
        molecules.from_smiles(bad)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_load_csv_reads_rows(tmp_path):
    path = write(tmp_path / "ok.csv", "name,smiles,logS\na,CCO,0.5\nb,c1ccccc1, -1.25\n")
    data = molecules.load_csv(path, "smiles", "logS")
    assert [d.smiles for d in data] == ["CCO", "c1ccccc1"]
    assert [d.y.item() for d in data] == [0.5, -1.25]


@pytest.mark.parametrize(("text", "match"), [
    ("smiles,y\nCCO,1\nC1CC,2\n", r"row 2 \(line 3\): column 'smiles' holds 'C1CC'"),
    ("smiles,y\nCCO,1\nCC,2\nCCC,abc\n", r"row 3 \(line 4\): target column 'y' holds 'abc', not a number"),
    ("smiles,y\nCCO,\n", r"row 1 \(line 2\): target column 'y' holds '', not a number"),
    ("smiles,y\nCCO,nan\n", r"row 1 \(line 2\): target column 'y' holds 'nan', not a finite number"),
    ("SMILES,y\nCCO,1\n", r"SMILES column 'smiles' not found .* columns are \['SMILES', 'y'\]"),
    ("smiles,target\nCCO,1\n", r"target column 'y' not found"),
    ("smiles,y\n", "no data rows"),
])
def test_load_csv_errors_name_row_and_column(tmp_path, text, match):
    path = write(tmp_path / "bad.csv", text)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(ValueError, match=match):
        molecules.load_csv(path, "smiles", "y")
    assert sorted(tmp_path.iterdir()) == before  # nothing written


@pytest.fixture(scope="module")
def solubility():
    return molecules.load_solubility()


def test_load_solubility(solubility):
    train, test = solubility
    assert (len(train), len(test)) == (1025, 257)
    assert train[0].smiles == "CCCCC" and train[0].y.item() == pytest.approx(-3.18)
    y = torch.cat([d.y for d in train])
    assert -12 < y.min() < y.max() < 2


def test_morgan_counts():
    counts = molecules.morgan_counts(["CCCCC", molecules.from_smiles("CCO")])
    assert counts.shape == (2, 2048)
    assert counts[0].sum() == 13  # 5 atoms at radius 0, 1 and 2, minus duplicate environments: RDKit's count
    from rdkit.Chem import rdFingerprintGenerator

    expected = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048).GetCountFingerprintAsNumPy(
        Chem.MolFromSmiles("CCO"))
    assert counts[1].tolist() == expected.tolist()


def scaffold(item) -> str:
    return MurckoScaffold.MurckoScaffoldSmiles(mol=Chem.MolFromSmiles(item.smiles), includeChirality=False)


@pytest.fixture(scope="module")
def dataset(solubility):
    return solubility[0][::3]  # 342 molecules from the whole file (it is ordered by class)


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.9, 0.1, 0.0), (0.6, 0.2, 0.2)])
def test_scaffold_split_is_disjoint_complete_and_deterministic(dataset, fractions):
    train, dev, test = molecules.scaffold_split(dataset, fractions, seed=3)
    assert sorted(map(id, train + dev + test)) == sorted(map(id, dataset))
    scaffolds = [{scaffold(d) for d in split} for split in (train, dev, test)]
    assert not (scaffolds[0] & scaffolds[1] or scaffolds[0] & scaffolds[2] or scaffolds[1] & scaffolds[2])
    assert abs(len(train) - fractions[0] * len(dataset)) <= 0.05 * len(dataset)
    assert (len(test) == 0) == (fractions[2] == 0)
    again = molecules.scaffold_split(dataset, fractions, seed=3)
    assert [[d.smiles for d in s] for s in again] == [[d.smiles for d in s] for s in (train, dev, test)]
    other = molecules.scaffold_split(dataset, fractions, seed=4)
    assert [d.smiles for d in other[1]] != [d.smiles for d in dev]


def test_scaffold_split_of_smiles_strings():
    smiles = ["c1ccccc1C", "c1ccccc1CC", "C1CCCCC1O", "CCO", "CCCC", "c1ccncc1"]
    train, dev, test = molecules.scaffold_split(smiles, (0.5, 0.25, 0.25), seed=0)
    assert sorted(train + dev + test) == sorted(smiles)
    assert {"c1ccccc1C", "c1ccccc1CC"} <= set(train) or {"c1ccccc1C", "c1ccccc1CC"}.isdisjoint(train)


def test_random_split(dataset):
    train, dev, test = molecules.random_split(dataset, (0.8, 0.1, 0.1), seed=1)
    assert (len(train), len(dev), len(test)) == (274, 34, 34)
    assert sorted(map(id, train + dev + test)) == sorted(map(id, dataset))
    assert [d.smiles for d in molecules.random_split(dataset, (0.8, 0.1, 0.1), seed=1)[0]] == [d.smiles for d in train]
    with pytest.raises(ValueError, match="fractions"):
        molecules.random_split(dataset, (0.8, 0.3, 0.1))


def test_library_imports_without_rdkit(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_rdkit(name, *args, **kwargs):
        if name == "rdkit" or name.startswith("rdkit."):
            raise ImportError("No module named 'rdkit'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_rdkit)
    with pytest.raises(ImportError, match=r"pip install 'graphformer\[molecules\]'"):
        molecules.from_smiles("CCO")


def test_graphformer_imports_without_rdkit_and_datamol():
    import subprocess
    import sys

    code = ("import sys; sys.modules['rdkit'] = sys.modules['datamol'] = None\n"
            "import graphformer, graphformer.datasets.molecules as m\n"
            "try:\n    m.load_solubility()\nexcept ImportError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install 'graphformer[molecules]'" in result.stdout
