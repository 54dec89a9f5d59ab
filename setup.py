"""inclr-fastreid: INCLR for FastReID, as an add-on (no fork of the host).

FastReID itself is installed separately with ``pip install --no-deps fastreid==1.4.0``: its
``torch==1.13.1`` pin cannot be met beside torch 2.x, and ``inclr_fastreid.compat`` makes it run.

The repository's top-level ``configs/`` (where the README's commands name them) is shipped inside the
package as ``inclr_fastreid/configs/`` (``package_dir`` below), so an installed ``inclr-train`` finds
``configs/INCLR/duke2market.yml`` from any folder (inclr_fastreid/config_files.py).
"""
import os

from setuptools import find_namespace_packages, find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
# configs/ and each folder under it, as data-only packages under inclr_fastreid.configs (setuptools
# treats every folder it ships as a package; naming them all keeps its "absent from packages" warning away)
CONFIG_PACKAGES = ["inclr_fastreid.configs"] + [
    f"inclr_fastreid.configs.{p}" for p in find_namespace_packages(where=os.path.join(HERE, "configs"))]

setup(
    name="inclr-fastreid",
    version="0.1.0",
    description="INCLR (local/global mutual pseudo-label refinement + inaccuracy-guided optimisation) "
                "for unsupervised domain adaptive person re-ID, as a FastReID add-on",
    long_description=open(os.path.join(HERE, "README.md")).read() if os.path.exists(os.path.join(HERE, "README.md")) else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["inclr_fastreid", "inclr_fastreid.*"]) + CONFIG_PACKAGES,
    package_dir={"inclr_fastreid.configs": "configs"},
    package_data={p: ["*.yml"] for p in CONFIG_PACKAGES},
    include_package_data=True,
    install_requires=[
        # the add-on's own needs
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy>=1.23",
        "scipy>=1.9",
        "scikit-learn>=1.2",
        "numba>=0.58",
        "faiss-cpu>=1.7.3",
        "tqdm",
        "Pillow",
        "matplotlib>=3.5",
        # FastReID 1.4.0's real runtime needs (installed here because FastReID goes in with --no-deps)
        "yacs>=0.1.8,<0.2",
        "opencv-python-headless>=4.7,<5",
        "tabulate>=0.9,<0.10",
        "termcolor>=2.2,<3",
        "tensorboard>=2.12",
    ],
    extras_require={
        # Nothing beyond a CUDA build of torch: GPU k-NN runs in torch on CUDA (pseudo_labels/knn.py).
        # No faiss GPU wheel here: faiss-gpu-cu12 and faiss-cpu (above; also FastReID 1.4.0's own
        # requirement) both install the `faiss` module, so pulling both leaves one overwriting the other.
        # Kept, empty, so `pip install '.[gpu]'` keeps working.
        "gpu": [],
        # inclr-export --onnx (tools/export_model.py --onnx): ONNX graph checked with onnxruntime
        "export": ["onnx>=1.14", "onnxruntime>=1.16"],
        "test": ["pytest>=7", "onnx>=1.14", "onnxruntime>=1.16"],
    },
    entry_points={"console_scripts": [
        "inclr-train = inclr_fastreid.cli.train_net:main",
        "inclr-export = inclr_fastreid.cli.export_model:main",
    ]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
