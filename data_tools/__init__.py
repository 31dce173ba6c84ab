"""Dataset conversion tools (`hccr-data`): LMDB packing, pen rendering, synthetic handwriting."""
