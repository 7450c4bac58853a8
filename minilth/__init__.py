"""minilth: the Lottery Ticket Hypothesis for pre-trained BERT networks, from scratch."""
__version__ = "0.1.0"
