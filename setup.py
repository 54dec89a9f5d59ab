"""inclr-fastreid: INCLR for FastReID, as an add-on (no fork of the host).

FastReID itself is installed separately with ``pip install --no-deps fastreid==1.4.0``: its
``torch==1.13.1`` pin cannot be met beside torch 2.x, and ``inclr_fastreid.compat`` makes it run.
"""
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))

setup(
    name="inclr-fastreid",
    version="0.1.0",
    description="INCLR (local/global mutual pseudo-label refinement + inaccuracy-guided optimisation) "
                "for unsupervised domain adaptive person re-ID, as a FastReID add-on",
    long_description=open(os.path.join(HERE, "README.md")).read() if os.path.exists(os.path.join(HERE, "README.md")) else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["inclr_fastreid", "inclr_fastreid.*"]),
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
        # GPU k-NN for clustering: faiss on CUDA (torch on CUDA is used when faiss-gpu is absent)
        "gpu": ["faiss-gpu-cu12"],
        # tools/export_model.py --onnx: ONNX graph checked with onnxruntime
        "export": ["onnx>=1.14", "onnxruntime>=1.16"],
        "test": ["pytest>=7", "onnx>=1.14", "onnxruntime>=1.16"],
    },
    scripts=["tools/train_net.py", "tools/export_model.py"],
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
